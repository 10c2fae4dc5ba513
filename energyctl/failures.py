"""How a command that failed unexpectedly, or was interrupted, ends: one line and an exit code.

Shared by the Typer app (``app.EnergyctlGroup``) and the path that runs plain command lines
without Typer (``fast_path``), so both end a run the same way.
"""

from __future__ import annotations

import os

from energy.db.redact import redact_text
from energy.domain.exceptions import error_document
from energyctl.output import EXIT_FAILED, EXIT_INTERRUPTED, Output, escape


def wants_traceback() -> bool:
    """ENERGYCTL_TRACEBACK=1 lets an unexpected error through with its traceback, for debugging."""
    return os.environ.get("ENERGYCTL_TRACEBACK") == "1"


def unexpected(exc: Exception, args: list[str]) -> int:
    """The last resort: one line (and the JSON error document for --json), never a traceback."""
    message = f"unexpected {type(exc).__name__}: {' '.join(redact_text(str(exc)).split())}"
    out = Output(as_json="--json" in args)
    if out.as_json:
        out.document(error_document("internal_error", message))
    out.note(f"[bold red]error[/]: {escape(message)} (set ENERGYCTL_TRACEBACK=1 to see where)")
    return EXIT_FAILED


def interrupted() -> int:
    Output().note("Interrupted.")
    return EXIT_INTERRUPTED
