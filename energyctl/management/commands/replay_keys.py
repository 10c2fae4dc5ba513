"""``manage.py replay_keys``: the same operation as ``energyctl replay``."""

from django.core.management.base import BaseCommand

from energyctl.commands.replay_run import DEFAULT_CHUNK, DEFAULT_RETRY_FOR_S, DEFAULT_SHOWN_FAILURES, run_replay
from energyctl.management.commands._adapter import finish, output_for


class Command(BaseCommand):
    help = ("Apply every request of a JSON Lines file (or - for stdin) exactly once and count the outcomes. "
            "Example: manage.py replay_keys requests.jsonl")

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON Lines file of requests, or - for stdin.")
        parser.add_argument("--json", action="store_true", help="Print the summary as one JSON document.")
        parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help="Requests per batch.")
        parser.add_argument("--show-failures", type=int, default=DEFAULT_SHOWN_FAILURES,
                            help="Report at most this many failed lines on stderr.")
        parser.add_argument("--retry-for", type=float, default=DEFAULT_RETRY_FOR_S, metavar="SECONDS",
                            help="Wait this long for an unavailable database before stopping with exit 75 "
                                 "(default 30; 0 stops at once).")

    def handle(self, *args, **options):
        out = output_for(self, options["json"])
        code = run_replay(out, options["file"], chunk_size=max(1, options["chunk_size"]),
                          show_failures=max(0, options["show_failures"]), retry_for=max(0.0, options["retry_for"]))
        finish(code, "some lines were not applied or replayed")
