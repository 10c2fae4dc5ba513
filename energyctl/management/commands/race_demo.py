"""``manage.py race_demo``: the same demo as ``energyctl race-demo``."""

from django.core.management.base import BaseCommand

from energyctl.commands.race_run import DEFAULT_AMOUNT, DEFAULT_BALANCE, DEFAULT_WORKERS, run_race
from energyctl.management.commands._adapter import finish, output_for


class Command(BaseCommand):
    help = ("Race real OS processes with each protection removed in turn, next to the protected path. "
            "Example: manage.py race_demo --workers 8 --scenario no_unique_key")

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="Racing processes.")
        parser.add_argument("--balance", type=int, default=DEFAULT_BALANCE, help="Starting balance.")
        parser.add_argument("--amount", type=int, default=DEFAULT_AMOUNT, help="Energy each process spends.")
        parser.add_argument("--scenario", action="append", help="Run only this scenario (repeatable).")
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON document.")

    def handle(self, *args, **options):
        out = output_for(self, options["json"])
        code = run_race(out, workers=options["workers"], balance=options["balance"], amount=options["amount"],
                        scenarios=options["scenario"])
        finish(code, "the race demo did not show what it should")
