"""The race demo: each protection of the consume use case removed in turn, failing on cue.

Real OS processes, each with its own connection, are driven step by step in a fixed order
(as PostgreSQL's isolation tester drives its sessions), so the harmful interleaving happens on
every run instead of by luck. The deliberately unsafe variants live in ``unsafe`` and only
ever touch tables of a throwaway schema; the real use case is never weakened.
"""

from energy.race.demo import SCENARIOS, run_demo
from energy.race.errors import DemoError, DemoFailed, DemoUnsupported
from energy.race.report import DemoReport, ScenarioResult, Step

__all__ = [
    "SCENARIOS",
    "DemoError",
    "DemoFailed",
    "DemoReport",
    "DemoUnsupported",
    "ScenarioResult",
    "Step",
    "run_demo",
]
