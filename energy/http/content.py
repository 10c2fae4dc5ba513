"""How the API reads a request body and picks the answer's format: DRF's, made cheap for the everyday request.

The parser is DRF's JSON parser, plus what it lacks: a 400 instead of a 500 for nesting too
deep to parse. DRF already refuses NaN and Infinity (STRICT_JSON) and answers malformed JSON
and bad UTF-8 with a 400; Django's DATA_UPLOAD_MAX_MEMORY_SIZE bounds the size first (see
settings).

The negotiation is DRF's default one, answered at once when the request leaves nothing to
negotiate: the answer is then the first renderer's, exactly as DRF would pick it.
"""

import json

from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        try:
            # The body is small and already in memory: decoded and parsed in one go, with
            # DRF's own rules (its charset check, strict constants) and error text.
            return json.loads(stream.read().decode(encoding),
                              parse_constant=strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


class JSONFirstNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation, skipped where its answer is known before it starts."""

    def select_parser(self, request, parsers):
        # The first parser whose media type is the request's own is the one DRF's loop finds first.
        if parsers and request.content_type == parsers[0].media_type:
            return parsers[0]
        return super().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        # No Accept header, */*, or exactly the first renderer's media type, and no ?format=:
        # DRF's loop would return the first renderer with its own media type.
        if renderers and format_suffix is None and not request.META.get("QUERY_STRING"):
            first = renderers[0]
            if request.META.get("HTTP_ACCEPT", "*/*") in ("*/*", first.media_type):
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
