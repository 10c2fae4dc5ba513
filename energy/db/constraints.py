"""Which named constraint refused a write: how a use case tells "someone got there first" from a failure.

Only a refusal by the constraint a use case relies on means that a concurrent request recorded
the same thing first (then the rule decides again with what it recorded); any other integrity
error is a real failure and goes up as one.
"""

from __future__ import annotations

from django.db import IntegrityError

from energy.models import IDEMPOTENCY_KEY_CONSTRAINT, ONE_RESOLUTION_CONSTRAINT, ONE_REVERSAL_CONSTRAINT

# SQLite names a UNIQUE index's columns in its message, not the constraint.
_SQLITE_COLUMNS = {
    IDEMPOTENCY_KEY_CONSTRAINT: "energy_consumption.client_id, energy_consumption.idempotency_key",
    ONE_REVERSAL_CONSTRAINT: "energy_consumption.target_id",
    ONE_RESOLUTION_CONSTRAINT: "energy_consumption.target_id",
}


def refused_by(exc: IntegrityError, constraint: str) -> bool:
    """Whether ``exc`` is ``constraint`` (one of the models' named UNIQUE constraints) refusing a row."""
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None:
        return diag.constraint_name == constraint
    return _SQLITE_COLUMNS[constraint] in str(exc)
