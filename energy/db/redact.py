"""Credentials never reach the screen: passwords in URLs and driver messages are masked."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_IN_TEXT = re.compile(r"(password=|://[^:/@\s]*:)[^@\s]*")


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact_text(url)
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def redact_text(text: str) -> str:
    """Mask anything in free text that looks like a password (``password=…``, ``user:…@``)."""
    return _SECRET_IN_TEXT.sub(rf"\1{MASK}", text)
