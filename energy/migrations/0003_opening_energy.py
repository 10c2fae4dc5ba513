"""The opening energy of every account, the ledger audit's starting point.

Existing accounts get what they must have started with: today's energy plus everything
recorded against them. The column is filled before it becomes NOT NULL. The migration is one
transaction; on PostgreSQL it first locks both tables against writers, in the order every
writer takes them (account, then consumption), so no consumption can be recorded between
reading the sums and committing the result. A lock wait that times out rolls it all back,
and `energyctl migrate` can simply be run again.
"""

from django.db import migrations, models

# Readers go on; writers wait until the migration commits (SHARE ROW EXCLUSIVE admits no
# ROW EXCLUSIVE holder, which every INSERT and UPDATE needs).
LOCK_OUT_WRITERS = "LOCK TABLE energy_account, energy_consumption IN SHARE ROW EXCLUSIVE MODE"

BACKFILL = """
UPDATE energy_account SET opening_energy = energy + COALESCE(
    (SELECT SUM(amount) FROM energy_consumption WHERE energy_consumption.account_id = energy_account.id), 0)
"""


def lock_out_writers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # SQLite has one writer at a time anyway
        schema_editor.execute(LOCK_OUT_WRITERS)


class Migration(migrations.Migration):
    dependencies = [("energy", "0002_clients")]

    operations = [
        migrations.RunPython(lock_out_writers, migrations.RunPython.noop),
        migrations.AddField(model_name="account", name="opening_energy", field=models.BigIntegerField(null=True)),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(model_name="account", name="opening_energy", field=models.BigIntegerField()),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.CheckConstraint(
                condition=models.Q(opening_energy__gte=0), name="energy_account_opening_energy_not_negative"
            ),
        ),
    ]
