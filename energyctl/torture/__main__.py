"""``python -m torture``: one fault-injection run; exit 0 only if every invariant held."""

from __future__ import annotations

import argparse
import json
import sys

from energyctl.torture import TortureConfig, run_torture
from energyctl.torture.report import text_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m torture",
        description="Consume under injected faults, then audit every answer; exit 0 only if every guarantee held.")
    parser.add_argument("--seconds", type=float, default=TortureConfig.seconds)
    parser.add_argument("--clients", type=int, default=TortureConfig.clients)
    parser.add_argument("--accounts", type=int, default=TortureConfig.accounts)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database-url", default=None,
                        help="run on a new dedicated database of this server instead of a temporary cluster")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    report = run_torture(TortureConfig(seconds=args.seconds, clients=args.clients, accounts=args.accounts,
                                       seed=args.seed, database_url=args.database_url))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print("\n".join(text_lines(report)))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
