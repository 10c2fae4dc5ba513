"""Every program a demo process can be told to run, by name (names cross the process pipe)."""

from energy.race import real, unsafe

PROGRAMS = {
    "consume_held_open": real.consume_held_open,
    "burst": real.burst,
    "hold": real.hold,
    "resolve_held_open": real.resolve_held_open,
    "without_row_lock": unsafe.without_row_lock,
    "without_unique_key": unsafe.without_unique_key,
    "without_transaction": unsafe.without_transaction,
    "with_stale_balance": unsafe.with_stale_balance,
    "resolve_without_hold_lock": unsafe.resolve_without_hold_lock,
}
