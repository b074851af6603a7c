"""Time remaining from how fast a quantity advances, with recent samples weighted most.

LS-DYNA's time step can fall sharply when elements distort (FORMATS.md §1.4), so the rate is
a weighted least-squares slope of value against active wall time where a sample's weight
halves every `half_life_s`: the estimate follows a slowdown within a few half-lives and is
not thrown by one noisy line. Pure: times are passed in.

The daemon asks for the rate of hundreds of jobs every second, so the weighted sums are
kept up to date as samples come and go (O(1) per sample and per `rate`) instead of being
summed over the whole window each time. They are kept relative to a reference sample, so
the large absolute times and values cancel nowhere, and rebuilt from the samples every
`max_samples` changes, so rounding cannot accumulate over a long run.
"""

from __future__ import annotations

import math
from collections import deque


class RateEstimator:
    """Rate of a monotonically advancing value (sim time, step time) against active seconds."""

    def __init__(self, half_life_s: float = 30.0, max_samples: int = 64) -> None:
        self.half_life_s = half_life_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._rebuild_every = max(1, max_samples)
        self._clear_sums()

    def _clear_sums(self) -> None:
        # Weighted sums over the samples, weights relative to the last sample (weight 1),
        # times and values relative to the reference (t0, v0).
        self._t0 = self._v0 = 0.0
        self._sw = self._st = self._sv = self._stt = self._stv = 0.0
        self._changes = 0

    def _put(self, t: float, v: float, w: float) -> None:
        """Add a sample of weight `w` to the sums (a negative `w` takes it out)."""
        dt, dv = t - self._t0, v - self._v0
        self._sw += w
        self._st += w * dt
        self._sv += w * dv
        self._stt += w * dt * dt
        self._stv += w * dt * dv

    def _rebuild(self) -> None:
        self._clear_sums()
        if not self._samples:
            return
        t_last = self._samples[-1][0]
        self._t0, self._v0 = self._samples[-1]
        for t, v in self._samples:
            self._put(t, v, self._weight(t_last - t))

    def _weight(self, age: float) -> float:
        return math.pow(0.5, age / self.half_life_s)

    def add(self, now: float, value: float) -> None:
        """Record `value` at active time `now`; a sample at the same time replaces the last."""
        samples = self._samples
        if samples and samples[-1][0] == now:
            self._put(*samples[-1], -1.0)
            samples[-1] = (now, value)
            self._put(now, value, 1.0)
        else:
            if samples:
                t_last = samples[-1][0]
                if len(samples) == samples.maxlen:
                    t_old, v_old = samples[0]
                    self._put(t_old, v_old, -self._weight(t_last - t_old))
                decay = self._weight(now - t_last)
                self._sw *= decay
                self._st *= decay
                self._sv *= decay
                self._stt *= decay
                self._stv *= decay
            samples.append((now, value))
            self._put(now, value, 1.0)
        self._changes += 1
        if self._changes >= self._rebuild_every or len(samples) == 1:
            self._rebuild()

    def reset(self) -> None:
        self._samples.clear()
        self._clear_sums()

    def rate(self) -> float | None:
        """Value units per second, or None with fewer than two distinct times or no progress."""
        if len(self._samples) < 2:
            return None
        sw = self._sw
        var = self._stt - self._st * self._st / sw
        # Equal times never share the window (add replaces), so var is 0 only by rounding.
        if var <= 0:
            return None
        cov = self._stv - self._st * self._sv / sw
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
