"""The history index, which takes over the foreign key's index on account_id.

On PostgreSQL the index is built CONCURRENTLY, so consumes keep going on a large table while
it builds; that cannot run inside a transaction, hence ``atomic = False``. A build stopped by
a lock timeout leaves an invalid index behind: a rerun builds it again, and skips a valid one.
"""

from django.db import migrations, models

from energy.db.schema_steps import Step, StepsOnPostgres, valid_index_exists

HISTORY = "energy_consumption_history"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("energy", "0003_opening_energy"),
    ]

    operations = [
        StepsOnPostgres(
            migrations.AddIndex(
                model_name="consumption",
                index=models.Index(fields=["account", "balance_after", "-id"], name=HISTORY),
            ),
            [Step(valid_index_exists(HISTORY), (
                f'DROP INDEX CONCURRENTLY IF EXISTS "{HISTORY}"',
                f'CREATE INDEX CONCURRENTLY "{HISTORY}" ON "energy_consumption"'
                ' ("account_id", "balance_after", "id" DESC)',
            ), atomic=False)],
        ),
        migrations.AlterField(
            model_name="consumption",
            name="account",
            field=models.ForeignKey(
                db_index=False, on_delete=models.deletion.PROTECT, related_name="consumptions", to="energy.account"
            ),
        ),
    ]
