"""DRF's JSON parser, plus what it lacks: a 400 instead of a 500 for nesting too deep to parse.

DRF already refuses NaN and Infinity (STRICT_JSON) and answers malformed JSON and bad UTF-8
with a 400; Django's DATA_UPLOAD_MAX_MEMORY_SIZE bounds the size first (see settings).
"""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
