"""``manage.py seed_accounts``: the same operation as ``energyctl seed``."""

from django.core.management.base import BaseCommand

from energyctl.commands.seed_run import run_seed
from energyctl.management.commands._adapter import finish, output_for


class Command(BaseCommand):
    help = ("Make accounts 1..N exist; new ones start with --energy. "
            "Example: manage.py seed_accounts --accounts 3 --energy 100")

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, required=True, help="Make accounts 1..N exist.")
        parser.add_argument("--energy", type=int, required=True, help="Starting energy of the accounts this creates.")
        parser.add_argument("--json", action="store_true", help="Print one JSON document.")

    def handle(self, *args, **options):
        out = output_for(self, options["json"])
        finish(run_seed(out, accounts=options["accounts"], energy=options["energy"]), "seeding failed")
