"""Log lines stay one line each: what a caller sent is escaped before it is written.

A path, header or exception message may carry CR, LF or other control characters (a URL's
``%0d%0a`` is decoded before the application sees it); written as they are, they would start
a forged line in the log.
"""

from __future__ import annotations

import logging
import re

# Where an error id is kept in the WSGI environ for Django's record of the failure (ErrorIdFilter).
# Here, not in errors.py: settings name the filter, and every command would import DRF with it.
ERROR_ID = "energy.error_id"
# Fields of the access log: anything but printable ASCII, and the backslash that escapes it.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
# Any record: C0 and C1 control characters, DEL, and Unicode's line and paragraph separators.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escaped(text: object) -> str:
    """Printable ASCII as it is; anything else as ``\\xHH``/``\\uHHHH``, a backslash as ``\\\\``: unambiguous."""
    return _NOT_PRINTABLE_ASCII.sub(_escape, str(text))


def field(text: object) -> str:
    """``escaped``, and a double quote as ``\\x22`` too: for a field written between quotes."""
    return escaped(text).replace('"', "\\x22")


def _escape(match: re.Match) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


class OneLine(logging.Filter):
    """A handler's filter: each record's message, arguments merged, with line-breaking characters escaped.

    Tracebacks are left as they are: they are the server's own text, one frame per line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _LINE_BREAKING.search(message):
            record.msg, record.args = _LINE_BREAKING.sub(_escape, message), None
        return True


class ErrorIdFilter(logging.Filter):
    """Django's record of a failed request, made fit for the log: with the error id the answer
    showed, so the two can be matched, and without the request object, whose text (in a JSON
    record) carries the query string, where a caller may have put a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = record.__dict__.pop("request", None)
        error_id = getattr(request, "META", {}).get(ERROR_ID)
        if error_id:
            record.msg, record.args = f"{record.getMessage()} (error id {error_id})", None
        return True
