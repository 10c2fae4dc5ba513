"""The consumption table becomes the ledger: one row per entry of any kind, numbered per account.

Nothing here rewrites the table or holds writers up for longer than a catalog update, so it
can run on a large table while consumes go on (figures: benchmarks/migration_cost.py):
- the model is renamed in Django's state only; the table keeps its name;
- columns are added with a constant default or NULL, which PostgreSQL (11 and later) records
  in the catalog without touching a row; DROP NOT NULL is a catalog change too;
- CHECK constraints and the foreign key are added NOT VALID (a brief lock, no scan) and then
  validated, which scans the table under a lock that lets writers go on;
- indexes are built CONCURRENTLY, and the old history index is dropped the same way once
  the new one exists; that cannot run inside a transaction, hence ``atomic = False``.
Every step asks the catalog first whether it is done, so a rerun after a lock timeout carries
on where the last run stopped (see energy.db.schema_steps). Existing rows keep ``seq`` NULL:
the audit and the history take them first, in their old balance_after order; no back-fill.
"""

from django.db import migrations, models

from energy.db.schema_steps import Step, StepsOnPostgres, column_exists, constraint_exists, valid_index_exists

ENTRY = "energy_consumption"
KINDS = ("consume", "credit", "reversal")
TARGET_FK = "energy_entry_target_fk"


def not_null_dropped(table: str, column: str) -> str:
    return (f"SELECT FROM pg_attribute WHERE attrelid = to_regclass('{table}') AND attname = '{column}'"
            " AND NOT attnotnull")


def add_column(table: str, column: str, definition: str) -> Step:
    return Step(column_exists(table, column), (f'ALTER TABLE "{table}" ADD COLUMN "{column}" {definition}',))


def check_not_valid_then_validate(name: str, condition: str) -> list[Step]:
    """A CHECK added without a scan under the table's brief exclusive lock, then validated beside writers."""
    return [
        Step(constraint_exists(ENTRY, name),
             (f'ALTER TABLE "{ENTRY}" ADD CONSTRAINT "{name}" CHECK ({condition}) NOT VALID',)),
        Step(constraint_exists(ENTRY, name, validated=True), (f'ALTER TABLE "{ENTRY}" VALIDATE CONSTRAINT "{name}"',)),
    ]


def index_concurrently(name: str, create: str) -> list[Step]:
    """An index built beside writers; an invalid one left by a stopped build is dropped and built again."""
    return [Step(valid_index_exists(name), (
        f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"',
        create,
    ), atomic=False)]


KIND_KNOWN = models.CheckConstraint(condition=models.Q(kind__in=KINDS), name="energy_entry_kind_known")
KEY_OR_TARGET = models.CheckConstraint(
    condition=(models.Q(kind__in=("reversal",), idempotency_key__isnull=True, target__isnull=False)
               | (~models.Q(kind__in=("reversal",)) & models.Q(idempotency_key__isnull=False, target__isnull=True))),
    name="energy_entry_key_or_target",
)
SEQ_UNIQUE = models.UniqueConstraint(fields=["account", "seq"], name="energy_entry_account_seq_unique",
                                     condition=models.Q(seq__isnull=False))
ONE_REVERSAL = models.UniqueConstraint(fields=["target"], name="energy_entry_one_reversal_per_target",
                                       condition=models.Q(kind="reversal"))
HISTORY_UNNUMBERED = models.Index(fields=["account", "balance_after", "-id"], name="energy_entry_early_history",
                                  condition=models.Q(seq__isnull=True))
OLD_HISTORY = "energy_consumption_history"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("energy", "0005_client_previous_token"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterModelTable(name="consumption", table=ENTRY),
            migrations.RenameModel(old_name="Consumption", new_name="Entry"),
            migrations.AlterField(
                model_name="entry", name="account",
                field=models.ForeignKey(db_index=False, on_delete=models.deletion.PROTECT, related_name="entries",
                                        to="energy.account"),
            ),
            migrations.AlterField(
                model_name="entry", name="client",
                field=models.ForeignKey(db_index=False, on_delete=models.deletion.PROTECT, related_name="entries",
                                        to="energy.client"),
            ),
        ]),
        StepsOnPostgres(
            migrations.AddField(model_name="account", name="last_seq", field=models.BigIntegerField(db_default=0)),
            [add_column("energy_account", "last_seq", "bigint DEFAULT 0 NOT NULL")],
        ),
        StepsOnPostgres(
            migrations.AddField(model_name="entry", name="kind", field=models.CharField(
                choices=[(k, k) for k in KINDS], db_default="consume", max_length=16)),
            [add_column(ENTRY, "kind", "varchar(16) DEFAULT 'consume' NOT NULL")],
        ),
        StepsOnPostgres(
            migrations.AddField(model_name="entry", name="seq", field=models.BigIntegerField(null=True)),
            [add_column(ENTRY, "seq", "bigint NULL")],
        ),
        StepsOnPostgres(
            migrations.AlterField(model_name="entry", name="idempotency_key",
                                  field=models.CharField(max_length=255, null=True)),
            [Step(not_null_dropped(ENTRY, "idempotency_key"),
                  (f'ALTER TABLE "{ENTRY}" ALTER COLUMN "idempotency_key" DROP NOT NULL',))],
        ),
        StepsOnPostgres(
            migrations.AddField(model_name="entry", name="target", field=models.ForeignKey(
                db_index=False, null=True, on_delete=models.deletion.DO_NOTHING, related_name="+", to="energy.entry")),
            [
                add_column(ENTRY, "target_id", "bigint NULL"),
                Step(constraint_exists(ENTRY, TARGET_FK), (
                    f'ALTER TABLE "{ENTRY}" ADD CONSTRAINT "{TARGET_FK}" FOREIGN KEY ("target_id")'
                    f' REFERENCES "{ENTRY}" ("id") DEFERRABLE INITIALLY DEFERRED NOT VALID',)),
                Step(constraint_exists(ENTRY, TARGET_FK, validated=True),
                     (f'ALTER TABLE "{ENTRY}" VALIDATE CONSTRAINT "{TARGET_FK}"',)),
            ],
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=KIND_KNOWN),
            check_not_valid_then_validate(KIND_KNOWN.name, "kind IN ('consume', 'credit', 'reversal')"),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=KEY_OR_TARGET),
            check_not_valid_then_validate(
                KEY_OR_TARGET.name,
                "(kind = 'reversal' AND idempotency_key IS NULL AND target_id IS NOT NULL)"
                " OR (kind <> 'reversal' AND idempotency_key IS NOT NULL AND target_id IS NULL)"),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=SEQ_UNIQUE),
            index_concurrently(SEQ_UNIQUE.name, f'CREATE UNIQUE INDEX CONCURRENTLY "{SEQ_UNIQUE.name}"'
                               f' ON "{ENTRY}" ("account_id", "seq") WHERE "seq" IS NOT NULL'),
        ),
        StepsOnPostgres(
            migrations.AddConstraint(model_name="entry", constraint=ONE_REVERSAL),
            index_concurrently(ONE_REVERSAL.name, f'CREATE UNIQUE INDEX CONCURRENTLY "{ONE_REVERSAL.name}"'
                               f""" ON "{ENTRY}" ("target_id") WHERE "kind" = 'reversal'"""),
        ),
        StepsOnPostgres(
            migrations.AddIndex(model_name="entry", index=HISTORY_UNNUMBERED),
            index_concurrently(HISTORY_UNNUMBERED.name, f'CREATE INDEX CONCURRENTLY "{HISTORY_UNNUMBERED.name}"'
                               f' ON "{ENTRY}" ("account_id", "balance_after", "id" DESC) WHERE "seq" IS NULL'),
        ),
        # The old history index covered every row; new entries need not be in it (they are
        # in the seq index), so dropping it keeps a consume's index writes at three.
        StepsOnPostgres(
            migrations.RemoveIndex(model_name="entry", name=OLD_HISTORY),
            [Step(f"SELECT WHERE to_regclass('{OLD_HISTORY}') IS NULL",
                  (f'DROP INDEX CONCURRENTLY IF EXISTS "{OLD_HISTORY}"',), atomic=False)],
        ),
    ]
