"""What a hold is, in business words: how long it may live and what can become of it."""

from __future__ import annotations

from energy.domain.exceptions import InvalidRequest

# A hold lives this long unless told otherwise: long enough for a checkout or a charging
# session to finish, short enough that forgotten energy comes back the same hour.
DEFAULT_EXPIRES_IN = 900
# Seven days: a reservation longer than that is a debt, not a hold.
MAX_EXPIRES_IN = 604_800

# A hold's states. It is born open and leaves that state once, for one of the other three.
OPEN, CAPTURED, VOIDED, EXPIRED = "open", "captured", "voided", "expired"
STATES = (OPEN, CAPTURED, VOIDED, EXPIRED)


def check_expires_in(seconds: int) -> int:
    """A hold's lifetime in whole seconds, 1 to MAX_EXPIRES_IN."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_EXPIRES_IN:
        raise InvalidRequest({"expires_in": f"must be a whole number of seconds between 1 and {MAX_EXPIRES_IN}"})
    return seconds
