"""The ETA's rate: a weighted least-squares slope whose weights halve every half-life, over
the last `max_samples` samples, kept as running sums (O(1) per sample). These tests hold it
to the definition, computed the direct way, two passes over the window."""

from __future__ import annotations

import math

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from serv.solvers.eta import RateEstimator


def direct_rate(samples: list[tuple[float, float]], half_life_s: float) -> float | None:
    """The definition: weighted least squares over `samples`, weight 0.5 ** (age / half-life)."""
    if len(samples) < 2:
        return None
    t_last = samples[-1][0]
    w = [0.5 ** ((t_last - t) / half_life_s) for t, _ in samples]
    total = math.fsum(w)
    mean_t = math.fsum(wi * t for wi, (t, _) in zip(w, samples)) / total
    mean_v = math.fsum(wi * v for wi, (_, v) in zip(w, samples)) / total
    var = math.fsum(wi * (t - mean_t) ** 2 for wi, (t, _) in zip(w, samples))
    cov = math.fsum(wi * (t - mean_t) * (v - mean_v) for wi, (t, v) in zip(w, samples))
    if var <= 0:
        return None
    return cov / var if cov / var > 0 else None


def window(added: list[tuple[float, float]], max_samples: int) -> list[tuple[float, float]]:
    """What the estimator keeps: a sample at the time of the last replaces it; the newest N."""
    kept: list[tuple[float, float]] = []
    for t, v in added:
        if kept and kept[-1][0] == t:
            kept[-1] = (t, v)
        else:
            kept.append((t, v))
    return kept[-max_samples:]


steps = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(0.01, 5.0), st.floats(5.0, 300.0)),  # time step
        st.floats(0.0, 50.0),  # value step (advancing, or standing still)
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(start=st.floats(0.0, 1e6), base=st.floats(0.0, 1e4), steps=steps)
def test_rate_matches_the_weighted_least_squares_definition(
    start: float, base: float, steps: list[tuple[float, float]]
) -> None:
    est = RateEstimator(half_life_s=30.0, max_samples=16)
    added: list[tuple[float, float]] = []
    t, v = start, base
    for dt, dv in steps:
        t, v = t + dt, v + dv
        est.add(t, v)
        added.append((t, v))
        want = direct_rate(window(added, 16), 30.0)
        got = est.rate()
        if want is None or want < 1e-9:
            # No progress over the window: the direct sums may leave rounding noise.
            assert got is None or got < 1e-6
        else:
            assert got == pytest.approx(want, rel=1e-7)


def test_a_value_that_stands_still_has_no_rate() -> None:
    est = RateEstimator()
    for i in range(100):
        est.add(1000.0 + i, 0.25)
    assert est.rate() is None and est.eta(1.0) is None


def test_eta_of_a_steady_rate_is_exact_after_a_long_run() -> None:
    """Thousands of samples (the window slides, sums are decayed and trimmed): no drift."""
    est = RateEstimator()
    for i in range(20_000):
        est.add(float(i), 1e-4 * i)
    assert est.rate() == pytest.approx(1e-4, rel=1e-9)
    assert est.eta(1e-4 * 19_999 + 0.5) == pytest.approx(5000.0, rel=1e-9)


def test_a_slowdown_is_followed_within_a_few_half_lives() -> None:
    est = RateEstimator(half_life_s=30.0)
    for i in range(60):
        est.add(float(i), 1e-3 * i)
    for i in range(60, 240):
        est.add(float(i), 0.059 + 1e-4 * (i - 59))
    rate = est.rate()
    assert rate is not None and rate < 1.5e-4


def test_reset_forgets_every_sample() -> None:
    est = RateEstimator()
    est.add(0.0, 0.0)
    est.add(1.0, 1.0)
    est.reset()
    est.add(5.0, 3.0)
    assert est.rate() is None
    est.add(6.0, 5.0)
    assert est.rate() == pytest.approx(2.0)
