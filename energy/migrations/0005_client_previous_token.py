"""A rotated-out token that keeps working for a while: its hash and the moment it stops.

The client table is small (one row per caller of the API), so the unique index and the
check constraint are built in the ordinary way.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("energy", "0004_history_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="client",
            name="previous_token_hash",
            field=models.CharField(max_length=64, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="client",
            name="previous_token_expires_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddConstraint(
            model_name="client",
            constraint=models.CheckConstraint(
                condition=(models.Q(previous_token_hash__isnull=True)
                           | models.Q(previous_token_expires_at__isnull=False)),
                name="energy_client_previous_token_expires",
            ),
        ),
    ]
