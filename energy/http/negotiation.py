"""DRF's content negotiation, with its everyday answer given without parsing the Accept header.

The API renders JSON only. A request that accepts anything (no Accept header, or ``*/*``) or
exactly ``application/json``, and names no format, gets JSON whatever DRF's parsing would
find; every other request goes through DRF's own negotiation unchanged (so an Accept header
that excludes JSON is still a 406). Skipping the parse saves tens of microseconds of CPU on
every request (README, Performance).
"""

from rest_framework.negotiation import DefaultContentNegotiation

JSON = "application/json"
# Accept values whose outcome is known: DRF picks the first renderer, with its own media type.
_ANY_OR_JSON = frozenset({None, "*/*", JSON})


def accepts_json_by_default(meta) -> bool:
    """The request's Accept header leaves the answer to the server, or asks for JSON exactly."""
    return meta.get("HTTP_ACCEPT") in _ANY_OR_JSON


class JSONFirstNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        first = renderers[0] if renderers else None
        if (first is not None and first.media_type == JSON and format_suffix is None
                and accepts_json_by_default(request.META)
                and self.settings.URL_FORMAT_OVERRIDE not in request.query_params):
            return first, JSON
        return super().select_renderer(request, renderers, format_suffix)
