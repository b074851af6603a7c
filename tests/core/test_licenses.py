"""contract.md § Configuration (`[licenses] NAME = COUNT`; LS-DYNA draws from pool `lsdyna`,
one licence per core) and § Errors (1005): `LicensePools` arithmetic, live external use from
the licence server, the never-over-book rule, and the texts a waiting job shows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from serv.core.licenses import LicenseOverbooking, LicensePools, PoolState, describe_demand
from serv.errors import ExceedsMachine

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class TestStaticPools:
    """contract.md § Configuration: a configured pool is a static count of licences."""

    def test_free_is_the_configured_size_when_nothing_is_held(self) -> None:
        """A fresh pool of 32 has 32 free."""
        assert LicensePools({"lsdyna": 32}).free("lsdyna") == 32

    def test_free_is_none_when_the_pool_is_not_configured(self) -> None:
        """A pool not under [licenses] and never read live is unlimited."""
        pools = LicensePools({"lsdyna": 32})
        assert pools.free("ansys") is None
        assert pools.can_take({"ansys": 10_000})

    def test_take_reduces_free_and_release_restores_it(self) -> None:
        """Taking 24 of 32 leaves 8; releasing gives them back."""
        pools = LicensePools({"lsdyna": 32})
        assert pools.take(1, {"lsdyna": 24}) == {"lsdyna": 24}
        assert pools.free("lsdyna") == 8
        assert pools.held_by(1) == {"lsdyna": 24}
        assert pools.release(1) == {"lsdyna": 24}
        assert pools.free("lsdyna") == 32
        assert pools.held_by(1) == {}

    def test_release_is_idempotent_when_called_twice(self) -> None:
        """A second release gives back nothing and changes nothing."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 4})
        pools.release(1)
        assert pools.release(1) == {}
        assert pools.free("lsdyna") == 32

    def test_take_fills_the_pool_exactly_when_demand_equals_free(self) -> None:
        """Two jobs of 16 fill 32; a third of 1 no longer fits."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 16})
        pools.take(2, {"lsdyna": 16})
        assert pools.free("lsdyna") == 0
        assert not pools.can_take({"lsdyna": 1})

    def test_take_raises_and_books_nothing_when_a_pool_is_short(self) -> None:
        """All or nothing: a demand on two pools where one is short books neither."""
        pools = LicensePools({"lsdyna": 32, "prepost": 1})
        pools.take(1, {"prepost": 1})
        with pytest.raises(LicenseOverbooking) as caught:
            pools.take(2, {"lsdyna": 4, "prepost": 1})
        assert (caught.value.pool, caught.value.wanted, caught.value.free) == ("prepost", 1, 0)
        assert "job 2" in str(caught.value) and "'prepost'" in str(caught.value)
        assert pools.free("lsdyna") == 32
        assert pools.held_by(2) == {}

    def test_take_returns_the_same_holding_when_repeated_with_the_same_demand(self) -> None:
        """Idempotent: taking the same demand twice books it once."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 8})
        assert pools.take(1, {"lsdyna": 8}) == {"lsdyna": 8}
        assert pools.free("lsdyna") == 24

    def test_take_raises_when_a_holder_asks_for_a_different_demand(self) -> None:
        """A job that holds licences must release before taking another amount."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 8})
        with pytest.raises(ValueError, match="already holds 8 lsdyna licences"):
            pools.take(1, {"lsdyna": 4})

    def test_take_ignores_zero_counts_and_rejects_negative_ones(self) -> None:
        """0 licences is no demand; a negative count is a programming error."""
        pools = LicensePools({"lsdyna": 0})
        assert pools.take(1, {"lsdyna": 0}) == {}
        assert pools.holders() == ()
        with pytest.raises(ValueError, match="must be an int >= 0"):
            pools.can_take({"lsdyna": -1})

    def test_unconfigured_pool_records_holdings_when_taken(self) -> None:
        """Takes from an unlimited pool still count, so a later live reading sees them."""
        pools = LicensePools()
        pools.take(1, {"lsdyna": 8})
        assert pools.held("lsdyna") == 8
        pools.set_external("lsdyna", 20, server_max=32, at=T0)
        assert pools.free("lsdyna") == 4


class TestExternalUse:
    """contract.md § Configuration: licences used by others on the server are not free."""

    def test_free_subtracts_other_users_when_a_live_figure_exists(self) -> None:
        """32 configured, 10 used elsewhere, 4 held here: 18 free."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 4})
        pools.set_external("lsdyna", 10, at=T0)
        assert pools.free("lsdyna") == 18

    def test_free_is_never_negative_when_others_take_more_than_is_left(self) -> None:
        """Others grabbing licences under running jobs leaves 0 free, not a negative count."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 30})
        pools.set_external("lsdyna", 10)
        assert pools.free("lsdyna") == 0
        assert not pools.can_take({"lsdyna": 1})

    def test_observe_server_subtracts_own_checked_out_licences_when_recording(self) -> None:
        """Server says 14 used, 4 of them ours: others use 10."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 4})
        assert pools.observe_server("lsdyna", 14, own_on_server=4, server_max=32, at=T0) == 10
        assert pools.free("lsdyna") == 18

    def test_observe_server_never_gives_negative_others_when_ours_exceed_the_count(self) -> None:
        """The server lagging behind our own check-outs gives 0 others, never below."""
        pools = LicensePools({"lsdyna": 32})
        assert pools.observe_server("lsdyna", 2, own_on_server=8) == 0
        pools.set_external("lsdyna", -3)
        assert pools.snapshot()[0].external == 0

    def test_job_still_starting_is_not_double_freed_when_the_server_lags(self) -> None:
        """A job admitted but not yet checked out holds here, not on the server: not subtracted."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 16})  # starting: the server does not see it yet
        pools.observe_server("lsdyna", 10, own_on_server=0)
        assert pools.free("lsdyna") == 6

    def test_unconfigured_pool_uses_the_server_maximum_when_read_live(self) -> None:
        """No [licenses] entry, but the server says 600 max, 384 used by others: 216 free."""
        pools = LicensePools()
        pools.set_external("lsdyna", 384, server_max=600, at=T0)
        assert pools.free("lsdyna") == 216
        assert pools.capacity("lsdyna") == 600

    def test_unconfigured_pool_stays_unlimited_when_the_reading_has_no_maximum(self) -> None:
        """Others' use without a server maximum gives nothing to subtract it from."""
        pools = LicensePools()
        pools.set_external("lsdyna", 384)
        assert pools.free("lsdyna") is None

    def test_configured_size_caps_our_jobs_when_the_server_is_larger(self) -> None:
        """A share of 32 on a 600 server with 400 used elsewhere: 32 free (min of both)."""
        pools = LicensePools({"lsdyna": 32})
        pools.set_external("lsdyna", 400, server_max=600)
        assert pools.free("lsdyna") == 32
        pools.set_external("lsdyna", 590, server_max=600)
        assert pools.free("lsdyna") == 10

    def test_server_maximum_caps_the_pool_when_smaller_than_configured(self) -> None:
        """Config says 32, the server only has 16: 16 is the most there is."""
        pools = LicensePools({"lsdyna": 32})
        pools.set_external("lsdyna", 0, server_max=16)
        assert pools.free("lsdyna") == 16
        assert pools.capacity("lsdyna") == 16

    def test_clear_external_falls_back_to_the_configured_size(self) -> None:
        """Without a reading (server unreachable), only the static size counts."""
        pools = LicensePools({"lsdyna": 32})
        pools.set_external("lsdyna", 30, server_max=32)
        pools.clear_external("lsdyna")
        pools.clear_external("lsdyna")
        assert pools.free("lsdyna") == 32

    def test_snapshot_reports_every_known_pool_sorted_by_name(self) -> None:
        """Configured, live-read and held-from pools all appear, with their figures."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(7, {"lsdyna": 4, "abaqus": 2})
        pools.set_external("lsdyna", 10, server_max=32, at=T0)
        assert pools.snapshot() == (
            PoolState("abaqus", None, None, None, None, held=2, free=None),
            PoolState("lsdyna", 32, 32, 10, T0, held=4, free=18),
        )


class TestResize:
    """contract.md § Configuration: a config reload changes pool sizes under running jobs."""

    def test_set_size_below_holdings_leaves_free_at_zero_until_released(self) -> None:
        """Shrinking 32 → 8 under a job of 16 keeps the job and admits nothing."""
        pools = LicensePools({"lsdyna": 32})
        pools.take(1, {"lsdyna": 16})
        pools.set_size("lsdyna", 8)
        assert pools.free("lsdyna") == 0
        assert pools.held_by(1) == {"lsdyna": 16}
        pools.release(1)
        assert pools.free("lsdyna") == 8

    def test_reconfigure_makes_a_removed_pool_unlimited(self) -> None:
        """A pool dropped from [licenses] is no longer limited; a new one starts full."""
        pools = LicensePools({"lsdyna": 32})
        pools.reconfigure({"abaqus": 5})
        assert pools.free("lsdyna") is None
        assert pools.free("abaqus") == 5

    def test_set_size_rejects_negative_sizes(self) -> None:
        """A negative pool size is a programming error (config validates >= 0)."""
        with pytest.raises(ValueError, match="must be an int >= 0"):
            LicensePools({"lsdyna": -1})


class TestRestore:
    """Recovery: a re-adopted job already holds its licences on the server."""

    def test_restore_books_past_free_when_the_job_is_re_adopted(self) -> None:
        """Restore never refuses: refusing would not free the solver's licences."""
        pools = LicensePools({"lsdyna": 8})
        pools.take(1, {"lsdyna": 8})
        assert pools.restore(2, {"lsdyna": 4}) == {"lsdyna": 4}
        assert pools.held("lsdyna") == 12
        assert pools.free("lsdyna") == 0


class TestWhyWaiting:
    """contract.md § Job `message`: why a queued job waits, naming the pool and the counts."""

    @pytest.mark.parametrize(
        ("held", "demand", "expected"),
        [
            (28, {"lsdyna": 4}, None),
            (30, {"lsdyna": 4}, "waiting for 4 lsdyna licences, 2 free"),
            (32, {"lsdyna": 1}, "waiting for 1 lsdyna licence, 0 free"),
            (0, {"ansys": 99}, None),
            (0, {}, None),
        ],
    )
    def test_why_waiting_names_the_short_pool_when_a_demand_does_not_fit(
        self, held: int, demand: dict[str, int], expected: str | None
    ) -> None:
        """The text names the count asked and the count free; None when it fits."""
        pools = LicensePools({"lsdyna": 32})
        if held:
            pools.take(99, {"lsdyna": held})
        assert pools.why_waiting(demand) == expected
        assert pools.can_take(demand) is (expected is None)

    def test_why_waiting_names_every_short_pool_when_several_are_short(self) -> None:
        """Two short pools: both named, in pool order."""
        pools = LicensePools({"lsdyna": 2, "prepost": 0})
        assert pools.why_waiting({"prepost": 1, "lsdyna": 4}) == (
            "waiting for 4 lsdyna licences, 2 free; waiting for 1 prepost licence, 0 free"
        )

    def test_why_waiting_counts_other_users_when_a_live_figure_exists(self) -> None:
        """Free in the text is after others' use."""
        pools = LicensePools({"lsdyna": 32})
        pools.set_external("lsdyna", 30)
        assert pools.why_waiting({"lsdyna": 4}) == "waiting for 4 lsdyna licences, 2 free"

    def test_describe_demand_lists_pools_in_order(self) -> None:
        """Demands read as text in messages."""
        assert describe_demand({"lsdyna": 4, "abaqus": 1}) == "1 abaqus licence, 4 lsdyna licences"
        assert describe_demand({}) == "no licences"


class TestNeverFits:
    """contract.md § Errors: 1005 when a request exceeds a licence pool."""

    def test_check_fits_raises_1005_when_demand_exceeds_the_pool(self) -> None:
        """64 licences from a pool of 32 can never start: ExceedsMachine naming the pool."""
        pools = LicensePools({"lsdyna": 32})
        with pytest.raises(ExceedsMachine, match="64 licences from pool 'lsdyna' exceed the 32") as caught:
            pools.check_fits({"lsdyna": 64})
        assert caught.value.code == 1005

    def test_check_fits_passes_when_only_others_use_the_licences(self) -> None:
        """Others' use may drop: a demand within the pool waits, it is not refused."""
        pools = LicensePools({"lsdyna": 32})
        pools.set_external("lsdyna", 32)
        pools.check_fits({"lsdyna": 32})
        pools.check_fits({"ansys": 10_000})


POOLS = ("lsdyna", "prepost", "free-for-all")
demands = st.dictionaries(st.sampled_from(POOLS), st.integers(0, 40), max_size=3)


class PoolMachine(RuleBasedStateMachine):
    """No sequence of takes, releases, restarts of live figures and resizes ever books past
    what was free at the time of the take, and the bookkeeping matches a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.pools = LicensePools({"lsdyna": 32, "prepost": 2})
        self.model: dict[int, dict[str, int]] = {}
        self.next_id = 1

    @rule(demand=demands)
    def take(self, demand: dict[str, int]) -> None:
        before = {pool: self.pools.free(pool) for pool in POOLS}
        fits = all(
            before[pool] is None or count <= before[pool]  # type: ignore[operator]
            for pool, count in demand.items()
        )
        assert self.pools.can_take(demand) is fits
        assert (self.pools.why_waiting(demand) is None) is fits
        job_id = self.next_id
        self.next_id += 1
        if fits:
            self.pools.take(job_id, demand)
            self.model[job_id] = {p: n for p, n in demand.items() if n}
            for pool, count in demand.items():
                free_now = self.pools.free(pool)
                if before[pool] is not None:
                    # Exactly what was asked came off what was free (clamped at 0).
                    assert free_now is not None and free_now <= before[pool] - count  # type: ignore[operator]
        else:
            with pytest.raises(LicenseOverbooking):
                self.pools.take(job_id, demand)
            assert self.pools.held_by(job_id) == {}

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.model)))
        assert self.pools.release(job_id) == self.model.pop(job_id)

    @rule(pool=st.sampled_from(POOLS), used=st.integers(-5, 50),
          server_max=st.none() | st.integers(0, 60))
    def external(self, pool: str, used: int, server_max: int | None) -> None:
        self.pools.set_external(pool, used, server_max=server_max, at=T0)

    @rule(pool=st.sampled_from(POOLS))
    def clear(self, pool: str) -> None:
        self.pools.clear_external(pool)

    @rule(pool=st.sampled_from(POOLS), size=st.none() | st.integers(0, 40))
    def resize(self, pool: str, size: int | None) -> None:
        self.pools.set_size(pool, size)

    @invariant()
    def holdings_match_the_model(self) -> None:
        for pool in POOLS:
            assert self.pools.held(pool) == sum(d.get(pool, 0) for d in self.model.values())
        assert set(self.pools.holders()) == {j for j, d in self.model.items() if d}

    @invariant()
    def free_is_never_negative(self) -> None:
        for pool in POOLS:
            free = self.pools.free(pool)
            assert free is None or free >= 0


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


class TestNoOverbookingStatic:
    """contract.md § Configuration: with a fixed size and no outside change, holdings never
    exceed the pool, whatever the order of takes and releases."""

    def test_holdings_never_exceed_the_size_when_takes_are_checked(self) -> None:
        """Greedy takes of varying sizes stop exactly at the pool size."""
        pools = LicensePools({"lsdyna": 32})
        for job_id, n in enumerate([5, 9, 13, 7, 3, 1, 1, 4], start=1):
            if pools.can_take({"lsdyna": n}):
                pools.take(job_id, {"lsdyna": n})
            else:
                with pytest.raises(LicenseOverbooking):
                    pools.take(job_id, {"lsdyna": n})
            assert pools.held("lsdyna") <= 32
        assert pools.held("lsdyna") == 32
