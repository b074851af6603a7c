"""Time remaining from how fast a quantity advances, with recent samples weighted most.

LS-DYNA's time step can fall sharply when elements distort (FORMATS.md §1.4), so the rate is
a weighted least-squares slope of value against active wall time where a sample's weight
halves every `half_life_s`: the estimate follows a slowdown within a few half-lives and is
not thrown by one noisy line. Pure: times are passed in.
"""

from __future__ import annotations

from collections import deque


class RateEstimator:
    """Rate of a monotonically advancing value (sim time, step time) against active seconds."""

    def __init__(self, half_life_s: float = 30.0, max_samples: int = 64) -> None:
        self.half_life_s = half_life_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, now: float, value: float) -> None:
        """Record `value` at active time `now`; a sample at the same time replaces the last."""
        if self._samples and self._samples[-1][0] == now:
            self._samples[-1] = (now, value)
        else:
            self._samples.append((now, value))

    def reset(self) -> None:
        self._samples.clear()

    def rate(self) -> float | None:
        """Value units per second, or None with fewer than two distinct times or no progress."""
        if len(self._samples) < 2:
            return None
        t_last = self._samples[-1][0]
        weights = [0.5 ** ((t_last - t) / self.half_life_s) for t, _ in self._samples]
        total = sum(weights)
        mean_t = sum(w * t for w, (t, _) in zip(weights, self._samples, strict=True)) / total
        mean_v = sum(w * v for w, (_, v) in zip(weights, self._samples, strict=True)) / total
        var = sum(w * (t - mean_t) ** 2 for w, (t, _) in zip(weights, self._samples, strict=True))
        if var <= 0:
            return None
        cov = sum(w * (t - mean_t) * (v - mean_v) for w, (t, v) in zip(weights, self._samples, strict=True))
        slope = cov / var
        return slope if slope > 0 else None

    def eta(self, target: float) -> float | None:
        """Seconds until the value reaches `target` at the current rate (0 once reached)."""
        if not self._samples:
            return None
        remaining = target - self._samples[-1][1]
        if remaining <= 0:
            return 0.0
        rate = self.rate()
        return None if rate is None else remaining / rate
