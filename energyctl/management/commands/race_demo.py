"""``manage.py race_demo``: ``energyctl race-demo``, with the same options and the same run."""

from energyctl.management.from_typer import TyperCommand


class Command(TyperCommand):
    cli_command = "race-demo"
