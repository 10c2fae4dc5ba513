"""What every scenario of a demo run shares: the worker pool, the throwaway schema, the amounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from energy.race.pool import Pool
from energy.race.sandbox import DemoSchema


@dataclass
class Demo:
    pool: Pool
    schema: DemoSchema
    balance: int
    amount: int
    progress: Callable[[str], None]
