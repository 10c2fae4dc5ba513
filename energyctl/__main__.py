"""``energyctl`` (the console script) and ``python -m energyctl``: one command line in, its exit code out."""

import sys


def main(args: list[str] | None = None) -> int:
    """Run ``energyctl ARGS`` (``sys.argv[1:]`` by default) in this process and return its exit code."""
    from energyctl.prepare import pause_collection, resume_collection

    pause_collection()
    try:
        from energyctl.app import main as run

        return run(args)
    finally:
        resume_collection()


if __name__ == "__main__":
    sys.exit(main())
