"""``manage.py seed_accounts``: ``energyctl seed``, with the same options and the same run."""

from energyctl.management.from_typer import TyperCommand


class Command(TyperCommand):
    cli_command = "seed"
