"""Clients, and idempotency keys scoped per client.

Existing consumptions become the operator's (the command line's key space). On PostgreSQL
nothing rewrites the consumption table: the new column arrives with a constant default
(a catalog change since PostgreSQL 11), its foreign key is checked without blocking writes
(NOT VALID, then VALIDATE), and the (client, key) index is built CONCURRENTLY before it
replaces the old key constraint. Hence a non-atomic migration.
"""

import django.db.models.functions.datetime
from django.db import migrations, models

# Frozen here: migrations must not change when the models module does.
OPERATOR_CLIENT_ID = 1
NEW_KEY = "energy_consumption_client_key_unique"
CONSUMPTION = "energy_consumption"


def create_operator(apps, schema_editor):
    Client = apps.get_model("energy", "Client")
    Client.objects.using(schema_editor.connection.alias).create(
        id=OPERATOR_CLIENT_ID, name="operator", token_hash=None, scopes=["consume", "read"], accounts=None
    )
    # The explicit id leaves the id sequence behind; move it past, so new clients get 2, 3, …
    from django.core.management.color import no_style

    for statement in schema_editor.connection.ops.sequence_reset_sql(no_style(), [Client]):
        schema_editor.execute(statement)


class OnPostgres(migrations.operations.base.Operation):
    """Run ``operation`` as ``sql`` on PostgreSQL (to avoid long locks), as itself elsewhere."""

    reversible = False

    def __init__(self, operation, sql):
        self.operation, self.sql = operation, sql

    def state_forwards(self, app_label, state):
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)
            return
        for statement in self.sql:
            schema_editor.execute(statement, params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        raise NotImplementedError("clients cannot be unmigrated: keys would collide again")

    def describe(self):
        return f"{self.operation.describe()} (lock-light on PostgreSQL)"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("energy", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Client",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=64, unique=True)),
                ("token_hash", models.CharField(max_length=64, null=True, unique=True)),
                ("scopes", models.JSONField(default=list)),
                ("accounts", models.JSONField(null=True)),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("last_used_at", models.DateTimeField(null=True)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(condition=~models.Q(name=""), name="energy_client_name_not_empty")
                ],
            },
        ),
        migrations.RunPython(create_operator, migrations.RunPython.noop),
        OnPostgres(
            migrations.AddField(
                model_name="consumption",
                name="client",
                field=models.ForeignKey(
                    db_index=False,
                    default=OPERATOR_CLIENT_ID,
                    on_delete=models.PROTECT,
                    related_name="consumptions",
                    to="energy.client",
                ),
                preserve_default=False,
            ),
            [
                f"ALTER TABLE {CONSUMPTION} ADD COLUMN client_id bigint NOT NULL DEFAULT {OPERATOR_CLIENT_ID}",
                f"ALTER TABLE {CONSUMPTION} ALTER COLUMN client_id DROP DEFAULT",
                f"ALTER TABLE {CONSUMPTION} ADD CONSTRAINT energy_consumption_client_id_fk"
                " FOREIGN KEY (client_id) REFERENCES energy_client (id) DEFERRABLE INITIALLY DEFERRED NOT VALID",
                f"ALTER TABLE {CONSUMPTION} VALIDATE CONSTRAINT energy_consumption_client_id_fk",
            ],
        ),
        OnPostgres(
            migrations.AddConstraint(
                model_name="consumption",
                constraint=models.UniqueConstraint(fields=("client", "idempotency_key"), name=NEW_KEY),
            ),
            [
                f"DROP INDEX CONCURRENTLY IF EXISTS {NEW_KEY}",  # left invalid by an interrupted earlier try
                f"CREATE UNIQUE INDEX CONCURRENTLY {NEW_KEY} ON {CONSUMPTION} (client_id, idempotency_key)",
                f"ALTER TABLE {CONSUMPTION} ADD CONSTRAINT {NEW_KEY} UNIQUE USING INDEX {NEW_KEY}",
            ],
        ),
        migrations.RemoveConstraint(model_name="consumption", name="energy_consumption_key_unique"),
    ]
