"""The cyclic garbage collector is paused while a one-shot command starts.

Start-up imports Typer, Django and psycopg: hundreds of thousands of objects that live as
long as the process, none of them garbage. Python's collector still walks them again and
again as they are made (about 60 ms of CPU per ``energyctl consume``; see the README's
"One-shot start-up"). So ``main`` pauses collection, and the first thing that means
real work, Django being ready, resumes it with everything made so far frozen: later
collections never walk the start-up objects again, and a command that runs for minutes
(replay, serve, the race demo) collects as usual.
"""

from __future__ import annotations

import gc

_paused = False


def pause_collection() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collection() -> None:
    """Collect as usual again, if ``pause_collection`` paused it; the objects made so far are kept out of it."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
