"""What a client is allowed to be and to do, in business words; no Django, no HTTP.

The rules a name, an allow-list and a token must follow, and the one question every
adapter asks of an authenticated client: may it do this, on this account?
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from energy.domain.exceptions import InvalidRequest
from energy.domain.requests import parse_account_id

# consume: consume and holds; read: balances and the ledger; credit: credit and reverse,
# which put energy back, so a client gets it only when named.
CONSUME, READ, CREDIT = "consume", "read", "credit"
ALL_SCOPES = (CONSUME, READ, CREDIT)
DEFAULT_SCOPES = (CONSUME, READ)
# The command line's own client: it has no token and can never be used over HTTP.
OPERATOR = "operator"
MAX_NAME_LENGTH = 64
# Names show up in tables, logs and shell commands: letters, digits, '.', '_', '-', starting
# with a letter or digit, so a name can never be mistaken for an option.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# More ids than this in one allow-list is a job for --all-accounts.
MAX_ALLOWED_ACCOUNTS = 10_000
# A token: a fixed prefix (so a leaked token is recognisable, e.g. by secret scanners) and
# 32 random bytes in URL-safe base64 (43 characters, 256 bits of entropy).
TOKEN_PREFIX = "ect_"  # noqa: S105 - a public marker, not a secret
TOKEN_RANDOM_BYTES = 32
TOKEN_PATTERN = re.compile(TOKEN_PREFIX + r"[A-Za-z0-9_-]{43}")
# How long a rotated-out token may keep working: time to roll the new one out to every
# instance of a client, never long enough for a leaked old token to live on for weeks.
MAX_KEEP_OLD_FOR_S = 7 * 24 * 3600
_SECONDS_TEXT = re.compile(r"[0-9]{1,12}")
_KEEP_OLD_FOR_RULE = f"must be whole seconds from 0 to {MAX_KEEP_OLD_FOR_S} (7 days)"
# The ways a request arrives, named in the consume log: the HTTP API or the trusted command line.
CLI, HTTP = "cli", "http"


def check_name(name: str) -> str:
    """The client name, or InvalidRequest naming what is wrong with it."""
    if not isinstance(name, str) or not name:
        problem = "must not be empty"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"must be at most {MAX_NAME_LENGTH} characters"
    elif not _NAME.fullmatch(name):
        problem = "may hold only letters, digits, '.', '_' and '-', and must start with a letter or digit"
    elif name.lower() == OPERATOR:
        problem = f"'{OPERATOR}' is reserved for the command line"
    else:
        return name
    raise InvalidRequest({"name": problem})


def parse_account_list(text: str) -> list[int]:
    """``"1,2,3"`` as sorted distinct account ids, by the same rules as any account id."""
    parts = [part.strip() for part in (text or "").split(",")]
    if not any(parts):
        raise InvalidRequest({"accounts": "must list at least one account id, e.g. 1,2,3"})
    if len(parts) > MAX_ALLOWED_ACCOUNTS:
        raise InvalidRequest({"accounts": f"at most {MAX_ALLOWED_ACCOUNTS} ids; use --all-accounts"})
    ids = set()
    for part in parts:
        try:
            ids.add(parse_account_id(part))
        except InvalidRequest as exc:
            raise InvalidRequest({"accounts": f"{part[:30]!r} {exc.fields['account_id']}"}) from None
    return sorted(ids)


def parse_scopes(text: str) -> list[str]:
    """``"consume,read,credit"`` as distinct known scopes, in the order of ALL_SCOPES."""
    named = {part.strip() for part in (text or "").split(",")} - {""}
    unknown = sorted(named - set(ALL_SCOPES))
    if not named or unknown:
        problem = f"unknown scope {unknown[0][:30]!r}; " if unknown else ""
        raise InvalidRequest({"scopes": f"{problem}give a comma-separated list of {', '.join(ALL_SCOPES)}"})
    return [scope for scope in ALL_SCOPES if scope in named]


def check_keep_old_for(seconds: int) -> int:
    """Seconds an old token keeps working after a rotation: 0 (it stops at once) up to a week."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_KEEP_OLD_FOR_S:
        raise InvalidRequest({"keep_old_for": _KEEP_OLD_FOR_RULE})
    return seconds


def parse_keep_old_for(text: str) -> int:
    """``--keep-old-for`` as given on the command line: whole seconds in decimal digits."""
    digits = (text or "").strip()
    if not _SECONDS_TEXT.fullmatch(digits):
        raise InvalidRequest({"keep_old_for": _KEEP_OLD_FOR_RULE})
    return check_keep_old_for(int(digits))


def is_token_shaped(token: str) -> bool:
    """Whether ``token`` could be one this project issued; anything else is refused unread."""
    return TOKEN_PATTERN.fullmatch(token) is not None


@dataclass(frozen=True)
class Grant:
    """What an authenticated client may do: its scopes and accounts (None: every account)."""

    client_id: int
    name: str
    scopes: frozenset[str]
    accounts: frozenset[int] | None

    # DRF and Django code ask request.user whether it is authenticated.
    is_authenticated = True

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def covers(self, account_id: int) -> bool:
        return self.accounts is None or account_id in self.accounts
