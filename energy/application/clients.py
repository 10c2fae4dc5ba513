"""Client use cases: add, list, rotate and revoke clients, and authenticate a token.

A token is shown once, when it is issued; only its SHA-256 is stored. A token carries 256
random bits, so a fast hash is right: there is nothing to brute-force, and a slow hash
would cost every request. It is looked up by its hash (the unique index) and the stored
hash is compared in constant time before it is trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from energy.db.guard import database_guard, once_more_if_lost
from energy.domain.clients import (
    DEFAULT_SCOPES,
    READ,
    TOKEN_PREFIX,
    TOKEN_RANDOM_BYTES,
    Grant,
    check_keep_old_for,
    check_name,
    is_token_shaped,
    parse_scopes,
)
from energy.domain.exceptions import ClientNameTaken, ClientNotFound, NotAClientOfTheApi
from energy.models import OPERATOR, OPERATOR_CLIENT_ID, Client

# One record per change to who may call (added, rotated, revoked): a trail of client
# management, with names and settings only, never a token or its hash.
log = logging.getLogger("energy.clients")

# last_used_at is written at most once per this interval per client, so the hot path pays
# one indexed read per request and no write: "last used" is accurate to a minute.
LAST_USED_RESOLUTION = timedelta(seconds=60)

_SCOPES, _ACCOUNTS, _LAST_USED = (Client._meta.get_field(name) for name in ("scopes", "accounts", "last_used_at"))
_TABLE = Client._meta.db_table
_ID, _NAME, _HASH, _ACTIVE = (Client._meta.get_field(name).column for name in ("id", "name", "token_hash", "active"))
_OLD_HASH, _OLD_UNTIL = (Client._meta.get_field(name).column
                         for name in ("previous_token_hash", "previous_token_expires_at"))
# Whether a client's last_used_at is due to move forward: read by the lookup, and repeated
# by the UPDATE so that, of several workers crossing the boundary together, one writes and
# the others match no row.
_STALE = f"({_LAST_USED.column} IS NULL OR {_LAST_USED.column} <= %(stale)s)"
# The lookup of every authenticated request, written out once instead of a queryset built and
# compiled per request: one indexed read of the current hash; only when no client has it, a
# second of the hash kept by a rotation, which counts until the database's clock passes its
# end (CURRENT_TIMESTAMP: the statement's start, as the lookup runs outside any transaction).
# The hash that matched comes back third, to be compared again in constant time. It runs on
# Django's cursor, so execute_wrapper and the query log see it; with server-side binding
# psycopg prepares it after a few executions on a connection (energy.db.config).
_LOOKUP = (
    f"SELECT {_ID}, {_NAME}, {_HASH}, {_SCOPES.column}, {_ACCOUNTS.column}, {_STALE} FROM {_TABLE} "  # noqa: S608 - names from _meta
    f"WHERE {_HASH} = %(digest)s AND {_ACTIVE} AND {_ID} <> {OPERATOR_CLIENT_ID:d} "
    f"UNION ALL "
    f"SELECT {_ID}, {_NAME}, {_OLD_HASH}, {_SCOPES.column}, {_ACCOUNTS.column}, {_STALE} FROM {_TABLE} "
    f"WHERE {_OLD_HASH} = %(digest)s AND {_OLD_UNTIL} > CURRENT_TIMESTAMP "
    f"AND {_ACTIVE} AND {_ID} <> {OPERATOR_CLIENT_ID:d} "
    f"LIMIT 1"
)
_TOUCH = f"UPDATE {_TABLE} SET {_LAST_USED.column} = %(now)s WHERE {_ID} = %(id)s AND {_STALE}"  # noqa: S608


@dataclass(frozen=True)
class IssuedToken:
    """A token at the one moment it exists in clear: right after add or rotate."""

    client: str
    token: str
    scopes: list[str]
    accounts: list[int] | None
    # Seconds the token it replaced keeps working (a rotation with keep_old_for); 0: none does.
    old_token_kept_for: int = 0

    def to_dict(self) -> dict:
        return {"client": self.client, "token": self.token, "scopes": self.scopes,
                "accounts": "all" if self.accounts is None else self.accounts}


def client_id_for(name: str | None) -> int:
    """The id of the client called ``name``; None or ``operator`` is the command line's own."""
    if name is None or name == OPERATOR:
        return OPERATOR_CLIENT_ID
    with database_guard():
        found = Client.objects.filter(name=name).values_list("id", flat=True).first()
    if found is None:
        raise ClientNotFound(name)
    return found


def add_client(*, name: str, accounts: list[int] | None, read_only: bool = False,
               scopes: list[str] | None = None) -> IssuedToken:
    """Create client ``name`` with a new token; ``accounts`` None allows every account.

    ``scopes`` default to DEFAULT_SCOPES; ``read_only`` is scope ``read`` alone.
    """
    check_name(name)
    scopes = [READ] if read_only else parse_scopes(",".join(DEFAULT_SCOPES if scopes is None else scopes))
    token = new_token()
    try:
        with database_guard(), transaction.atomic():
            Client.objects.create(name=name, token_hash=hash_token(token), scopes=scopes, accounts=accounts)
    except IntegrityError:
        # The unique index on the name decides, also between two adds racing each other.
        with database_guard():
            taken = Client.objects.filter(name=name).exists()
        if taken:
            raise ClientNameTaken(name) from None
        raise
    log.info("client %s added", name, extra={"event": "client_added", "client": name, "scopes": scopes,
                                              "accounts": "all" if accounts is None else accounts})
    return IssuedToken(name, token, scopes, accounts)


def list_clients() -> list[dict]:
    """Every client of the API (not the operator), oldest first; never a token nor its hash."""
    with database_guard():
        rows = list(Client.objects.exclude(pk=OPERATOR_CLIENT_ID).order_by("id").values(
            "name", "scopes", "accounts", "active", "created_at", "last_used_at"))
    return [{"client": row["name"], "scopes": row["scopes"],
             "accounts": "all" if row["accounts"] is None else row["accounts"], "active": row["active"],
             "created_at": _iso(row["created_at"]), "last_used_at": _iso(row["last_used_at"])} for row in rows]


def rotate_token(*, name: str, keep_old_for: int = 0) -> IssuedToken:
    """A new token for ``name``; the old one stops working with this commit, or ``keep_old_for``
    seconds later by the database's clock, both working meanwhile.

    Only the token just replaced is kept: one kept by an earlier rotation stops now. A revoked
    client becomes active again with the new token only: rotating is how an operator re-admits
    a client, never with its old token.
    """
    check_keep_old_for(keep_old_for)
    token = new_token()
    with database_guard(), transaction.atomic():
        client = _api_client(name)
        kept = client.token_hash if keep_old_for else None
        Client.objects.filter(pk=client.pk).update(
            token_hash=hash_token(token), active=True, previous_token_hash=kept,
            previous_token_expires_at=None if kept is None else Now() + timedelta(seconds=keep_old_for))
    kept_for = 0 if kept is None else keep_old_for
    log.info("client %s rotated, old token kept for %s s", name, kept_for,
             extra={"event": "client_rotated", "client": name, "keep_old_for": kept_for})
    return IssuedToken(client.name, token, client.scopes, client.accounts, old_token_kept_for=kept_for)


def revoke_client(*, name: str) -> None:
    """Every token of ``name`` stops working with this commit, a kept old one too; the hashes are dropped."""
    with database_guard(), transaction.atomic():
        _api_client(name)
        Client.objects.filter(name=name).update(token_hash=None, previous_token_hash=None,
                                                previous_token_expires_at=None, active=False)
    log.info("client %s revoked", name, extra={"event": "client_revoked", "client": name})


def authenticate(token: str) -> Grant | None:
    """The grant of the active client holding ``token``, or None. Never the operator.

    Reads the client on every call (no cache), so a revocation or rotation is seen by the
    very next request.
    """
    if not is_token_shaped(token):
        return None
    digest = hash_token(token)
    # The first statement of every API request: a kept connection found dead is replaced here.
    found = once_more_if_lost(lambda: _look_up(digest))
    if found is None:
        return None
    client_id, name, _, scopes, accounts, _ = found
    scopes, accounts = (field.from_db_value(value, None, connection)
                        for field, value in ((_SCOPES, scopes), (_ACCOUNTS, accounts)))
    return Grant(client_id, name, frozenset(scopes), None if accounts is None else frozenset(accounts))


def _look_up(digest: str) -> tuple | None:
    """The active client row whose token hashes to ``digest``, its last use moved forward if due."""
    with database_guard(), connection.cursor() as cursor:
        cursor.execute(_LOOKUP, {"digest": digest, "stale": _stale_before()})
        found = cursor.fetchone()
        if found is None or not hmac.compare_digest(found[2], digest):
            return None
        if found[5]:
            _note_use(cursor, found[0])
        return found


def _note_use(cursor, client_id: int) -> None:
    """Move last_used_at forward; of several workers crossing the boundary together, one writes."""
    cursor.execute(_TOUCH, {"id": client_id, "now": _LAST_USED.get_db_prep_value(timezone.now(), connection),
                            "stale": _stale_before()})


def _stale_before():
    """The moment before which last_used_at is due to move, as the database compares it."""
    return _LAST_USED.get_db_prep_value(timezone.now() - LAST_USED_RESOLUTION, connection)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _api_client(name: str) -> Client:
    """Client ``name``, locked for update; the operator and unknown names are refused."""
    if name == OPERATOR:
        raise NotAClientOfTheApi(name)
    client = Client.objects.select_for_update().filter(name=name).first()
    if client is None:
        raise ClientNotFound(name)
    return client


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
