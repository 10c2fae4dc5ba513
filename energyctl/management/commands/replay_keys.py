"""``manage.py replay_keys``: ``energyctl replay``, with the same options and the same run."""

from energyctl.management.from_typer import TyperCommand


class Command(TyperCommand):
    cli_command = "replay"
