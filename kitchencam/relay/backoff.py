"""Retry delays that grow, are capped, and start over after a healthy run (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_FACTOR = 2.0
HEALTHY_UPTIME_S = 60.0
JITTER = 0.1


@dataclass
class Backoff:
    """The delay before the next attempt, given how long the last one ran."""

    first_s: float = BACKOFF_FIRST_S
    max_s: float = BACKOFF_MAX_S
    factor: float = BACKOFF_FACTOR
    healthy_s: float = HEALTHY_UPTIME_S
    jitter: float = JITTER
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self, ran_for_s: float) -> float:
        """Seconds to wait after an attempt that ran ``ran_for_s`` seconds."""
        if ran_for_s >= self.healthy_s:
            self.attempts = 0
        delay = min(self.max_s, self.first_s * self.factor**self.attempts)
        self.attempts += 1
        return delay * (1 + self.jitter * (2 * self.rng.random() - 1))

    def reset(self) -> None:
        """Start over from the first delay."""
        self.attempts = 0
