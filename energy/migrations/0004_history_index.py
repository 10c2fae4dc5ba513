"""The history index, which takes over the foreign key's index on account_id.

On PostgreSQL the index is built CONCURRENTLY, so consumes keep going on a large table while
it builds; that cannot run inside a transaction, hence ``atomic = False``.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexWithoutBlockingWrites(AddIndexConcurrently):
    """Django's AddIndexConcurrently on PostgreSQL; a plain AddIndex elsewhere (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("energy", "0003_opening_energy"),
    ]

    operations = [
        AddIndexWithoutBlockingWrites(
            model_name="consumption",
            index=models.Index(fields=["account", "balance_after", "-id"], name="energy_consumption_history"),
        ),
        migrations.AlterField(
            model_name="consumption",
            name="account",
            field=models.ForeignKey(
                db_index=False, on_delete=models.deletion.PROTECT, related_name="consumptions", to="energy.account"
            ),
        ),
    ]
