"""Client use cases the command line needs to act in a client's key space."""

from __future__ import annotations

from energy.application.guard import database_guard
from energy.domain.exceptions import ClientNotFound
from energy.models import OPERATOR, OPERATOR_CLIENT_ID, Client


def client_id_for(name: str | None) -> int:
    """The id of the client called ``name``; None or ``operator`` is the command line's own."""
    if name is None or name == OPERATOR:
        return OPERATOR_CLIENT_ID
    with database_guard():
        found = Client.objects.filter(name=name).values_list("id", flat=True).first()
    if found is None:
        raise ClientNotFound(name)
    return found
