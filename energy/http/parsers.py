"""JSON parsing that refuses pathological bodies with a 400 instead of a 500.

Size is bounded before parsing by Django's DATA_UPLOAD_MAX_MEMORY_SIZE (see settings).
"""

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        except RecursionError:
            raise ParseError("Malformed JSON: nested too deeply.") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")
