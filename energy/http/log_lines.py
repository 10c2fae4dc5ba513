"""Log lines stay one line each: what a caller sent is escaped before it is written.

A path, header or exception message may carry CR, LF or other control characters (a URL's
``%0d%0a`` is decoded before the application sees it); written as they are, they would start
a forged line in the log. Every character outside printable ASCII is written as ``\\xHH`` (or
``\\uHHHH``), and a backslash as ``\\\\``, so the line is unambiguous and nothing is lost.
"""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")


def escaped(text: object) -> str:
    return _UNSAFE.sub(_escape, str(text))


def _escape(match: re.Match) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


class OneLine(logging.Filter):
    """A handler's filter: each record's message, arguments merged, with control characters escaped.

    Tracebacks are left as they are: they are the server's own text, one frame per line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _UNSAFE.search(message):
            record.msg, record.args = escaped(message), None
        return True
