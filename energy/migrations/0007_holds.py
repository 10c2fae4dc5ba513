"""Holds: an account's ``held`` balance, and the hold's expiry, state and held-after on entries.

Like 0006, nothing here rewrites a table or holds writers up for longer than a catalog update
(figures: benchmarks/migration_cost.py, 0007 statement by statement):
- the new columns have a constant default or are NULL: recorded in the catalog, no row touched;
- the new CHECK constraints are added NOT VALID (a brief lock, no scan), then validated beside
  writers;
- the two CHECK constraints whose condition grows with the new kinds (known kinds, key or
  target) cannot be altered in place: the new condition is added under a temporary name NOT
  VALID and validated, then, in one short transaction, the old one is dropped and the new one
  takes its name; no moment is left without the check;
- the open-holds index and the one-resolution UNIQUE index are built CONCURRENTLY, hence
  ``atomic = False``.
Every step asks the catalog first whether it is done, so a rerun carries on where a stopped
run left off (energy.db.schema_steps). Existing entries are consumes, credits and reversals
with held_after 0, which is what the account's held was when each was recorded.
"""

from django.db import migrations, models

from energy.db.schema_steps import Step, StepsOnPostgres, column_exists, constraint_exists, valid_index_exists

ACCOUNT = "energy_account"
ENTRY = "energy_consumption"
KINDS = ("consume", "credit", "reversal", "hold", "capture", "void")
WITH_TARGET = ("reversal", "capture", "void")
STATES = ("open", "captured", "voided", "expired")


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def add_column(table: str, column: str, definition: str) -> Step:
    return Step(column_exists(table, column), (f'ALTER TABLE "{table}" ADD COLUMN "{column}" {definition}',))


def new_check(table: str, name: str, condition: str) -> list[Step]:
    """A CHECK added without a scan under the table's brief exclusive lock, then validated beside writers."""
    return [
        Step(constraint_exists(table, name),
             (f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" CHECK ({condition}) NOT VALID',)),
        Step(constraint_exists(table, name, validated=True), (f'ALTER TABLE "{table}" VALIDATE CONSTRAINT "{name}"',)),
    ]


def replaced_check(name: str, condition: str, marker: str) -> list[Step]:
    """The CHECK ``name`` given a wider ``condition``: the new one validated under a temporary
    name beside writers, then swapped in for the old one in one brief transaction.

    ``marker`` is a word only the new condition holds: it tells that the swap is done.
    """
    temporary = f"{name}_new"
    swapped = (f"SELECT FROM pg_constraint WHERE conrelid = to_regclass('{ENTRY}') AND conname = '{name}'"
               f" AND pg_get_constraintdef(oid) LIKE '%{marker}%'")
    return [
        Step(f"{swapped} UNION ALL {constraint_exists(ENTRY, temporary)}",
             (f'ALTER TABLE "{ENTRY}" ADD CONSTRAINT "{temporary}" CHECK ({condition}) NOT VALID',)),
        Step(f"{swapped} UNION ALL {constraint_exists(ENTRY, temporary, validated=True)}",
             (f'ALTER TABLE "{ENTRY}" VALIDATE CONSTRAINT "{temporary}"',)),
        Step(swapped, (
            f'ALTER TABLE "{ENTRY}" DROP CONSTRAINT IF EXISTS "{name}"',
            f'ALTER TABLE "{ENTRY}" RENAME CONSTRAINT "{temporary}" TO "{name}"',
        )),
    ]


def index_concurrently(name: str, create: str) -> list[Step]:
    """An index built beside writers; an invalid one left by a stopped build is dropped and built again."""
    return [Step(valid_index_exists(name), (f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"', create), atomic=False)]


HELD_NOT_NEGATIVE = models.CheckConstraint(condition=models.Q(held__gte=0), name="energy_account_held_not_negative")
HELD_AFTER_NOT_NEGATIVE = models.CheckConstraint(condition=models.Q(held_after__gte=0),
                                                 name="energy_entry_held_after_not_negative")
KIND_KNOWN = models.CheckConstraint(condition=models.Q(kind__in=KINDS), name="energy_entry_kind_known")
KEY_OR_TARGET = models.CheckConstraint(
    condition=(models.Q(kind__in=WITH_TARGET, idempotency_key__isnull=True, target__isnull=False)
               | (~models.Q(kind__in=WITH_TARGET) & models.Q(idempotency_key__isnull=False, target__isnull=True))),
    name="energy_entry_key_or_target",
)
HOLD_FIELDS = models.CheckConstraint(
    condition=(models.Q(kind="hold", expires_at__isnull=False, state__isnull=False, state__in=STATES)
               | (~models.Q(kind="hold") & models.Q(expires_at__isnull=True, state__isnull=True))),
    name="energy_entry_hold_fields",
)
ONE_RESOLUTION = models.UniqueConstraint(fields=["target"], name="energy_entry_one_resolution_per_hold",
                                         condition=models.Q(kind__in=("capture", "void")))
OPEN_HOLDS = models.Index(fields=["account", "expires_at"], name="energy_entry_open_holds",
                          condition=models.Q(kind="hold", state="open"))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("energy", "0006_ledger_entries"),
    ]

    operations = [
        StepsOnPostgres(
            migrations.AddField(model_name="account", name="held", field=models.BigIntegerField(db_default=0)),
            [add_column(ACCOUNT, "held", "bigint DEFAULT 0 NOT NULL")],
        ),
        StepsOnPostgres(
            migrations.AddField(model_name="entry", name="held_after", field=models.BigIntegerField(db_default=0)),
            [add_column(ENTRY, "held_after", "bigint DEFAULT 0 NOT NULL")],
        ),
        StepsOnPostgres(
            migrations.AddField(model_name="entry", name="expires_at", field=models.DateTimeField(null=True)),
            [add_column(ENTRY, "expires_at", "timestamp with time zone NULL")],
        ),
        StepsOnPostgres(
            migrations.AddField(model_name="entry", name="state", field=models.CharField(
                choices=[(s, s) for s in STATES], max_length=16, null=True)),
            [add_column(ENTRY, "state", "varchar(16) NULL")],
        ),
        migrations.AlterField(
            model_name="entry", name="kind",
            field=models.CharField(choices=[(k, k) for k in KINDS], db_default="consume", max_length=16),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="account", constraint=HELD_NOT_NEGATIVE),
            new_check(ACCOUNT, HELD_NOT_NEGATIVE.name, "held >= 0"),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=HELD_AFTER_NOT_NEGATIVE),
            new_check(ENTRY, HELD_AFTER_NOT_NEGATIVE.name, "held_after >= 0"),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=HOLD_FIELDS),
            new_check(ENTRY, HOLD_FIELDS.name,
                      f"(kind = 'hold' AND expires_at IS NOT NULL AND state IS NOT NULL AND state IN ({_sql_list(STATES)}))"
                      " OR (kind <> 'hold' AND expires_at IS NULL AND state IS NULL)"),
        ),
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveConstraint(model_name="entry", name=KIND_KNOWN.name),
            migrations.RemoveConstraint(model_name="entry", name=KEY_OR_TARGET.name),
        ]),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=KIND_KNOWN),
            replaced_check(KIND_KNOWN.name, f"kind IN ({_sql_list(KINDS)})", marker="capture"),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=KEY_OR_TARGET),
            replaced_check(
                KEY_OR_TARGET.name,
                f"(kind IN ({_sql_list(WITH_TARGET)}) AND idempotency_key IS NULL AND target_id IS NOT NULL)"
                f" OR (kind NOT IN ({_sql_list(WITH_TARGET)}) AND idempotency_key IS NOT NULL AND target_id IS NULL)",
                marker="capture"),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=ONE_RESOLUTION),
            index_concurrently(ONE_RESOLUTION.name, f'CREATE UNIQUE INDEX CONCURRENTLY "{ONE_RESOLUTION.name}"'
                               f""" ON "{ENTRY}" ("target_id") WHERE "kind" IN ('capture', 'void')"""),
        ),
        StepsOnPostgres(
            migrations.AddIndex(model_name="entry", index=OPEN_HOLDS),
            index_concurrently(OPEN_HOLDS.name, f'CREATE INDEX CONCURRENTLY "{OPEN_HOLDS.name}"'
                               f""" ON "{ENTRY}" ("account_id", "expires_at") WHERE "kind" = 'hold'"""
                               """ AND "state" = 'open'"""),
        ),
    ]
