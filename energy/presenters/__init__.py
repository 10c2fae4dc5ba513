"""What the command line and the management commands show, written once for both.

Each ``run_*`` function takes an ``Output``, runs one use case and returns the exit code;
rich for people, one JSON document for programs. Django must already be set up by the
caller (``manage.py``, or the CLI's bootstrap). Nothing here knows Typer or the CLI.
"""
