"""What a race demo found: per scenario, the balances, the anomalies and the interleaving."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One line of a timeline: what a session did, in the order the database saw it.

    ``session`` is "T1", "T2", … or "" for what the demo itself did or observed.
    """

    session: str
    text: str

    def to_dict(self) -> dict:
        return {"session": self.session, "text": self.text}


@dataclass
class ScenarioResult:
    name: str
    protection_removed: str
    expected_balance: int
    final_balance: int
    consumptions_recorded: int
    anomalies: list[str] = field(default_factory=list)
    timeline: list[Step] = field(default_factory=list)
    # Whether the anomaly this scenario exists to show was among those found.
    failure_shown: bool = False
    # Whether the tables behind final_balance keep CHECK (energy >= 0), as the real schema does.
    balance_check: bool = True
    # Where they do not: the same race again on tables that keep it (final_balance,
    # consumptions_recorded, outcomes per session).
    with_balance_check: dict | None = None

    @property
    def holds(self) -> bool:
        return not self.anomalies

    @property
    def as_expected(self) -> bool:
        """The protected path holds; every unsafe variant shows its own failure."""
        return self.holds if self.name == "protected" else self.failure_shown

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "protection_removed": self.protection_removed,
            "expected_balance": self.expected_balance,
            "final_balance": self.final_balance,
            "consumptions_recorded": self.consumptions_recorded,
            "anomalies": list(self.anomalies),
            "holds": self.holds,
            "timeline": [step.to_dict() for step in self.timeline],
            "balance_check": self.balance_check,
            **({"with_balance_check": self.with_balance_check} if self.with_balance_check is not None else {}),
        }


@dataclass
class DemoReport:
    backend: str
    workers: int
    scenarios: list[ScenarioResult]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.scenarios) and all(result.as_expected for result in self.scenarios)

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "scenarios": [result.to_dict() for result in self.scenarios],
        }
