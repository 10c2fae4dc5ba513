"""The opening energy of every account, the ledger audit's starting point.

Existing accounts get what they must have started with: today's energy plus everything
recorded against them. The column is filled before it becomes NOT NULL.
"""

from django.db import migrations, models

BACKFILL = """
UPDATE energy_account SET opening_energy = energy + COALESCE(
    (SELECT SUM(amount) FROM energy_consumption WHERE energy_consumption.account_id = energy_account.id), 0)
"""


class Migration(migrations.Migration):
    dependencies = [("energy", "0002_clients")]

    operations = [
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
