"""Licence pools: how many licences each pool has, who holds them, and who may take more.

contract.md § Configuration: `[licenses] NAME = COUNT` declares a static pool; LS-DYNA
profiles draw from the pool `lsdyna`, one licence per core, unless the profile's `licenses`
key says otherwise (`SolverProfile.licenses_for`). A request that can never fit a pool is
error 1005 (`ExceedsMachine`).

`LicensePools` is pure: it reads no clock and runs nothing. The edge (serv/lstc.py, run by
the daemon) polls the licence server and feeds the result in as a fact, with the time it was
read, through `observe_server` (or `set_external` when it already knows the others' use).
Only the daemon's loop thread mutates it, so it has no lock (style.md §3.6); it must not be
shared with other threads.

The rules, per pool (S = configured size, M = the licence server's maximum, H = licences the
jobs of this daemon hold here, X = the live "used by others" figure):

* Capacity of the licence server: M when a live reading gave one, else S.
* Nothing known (no S, no M): the pool is unlimited; `free` is None and every take succeeds
  (holdings are still recorded, so a later reading is accounted for correctly).
* `free = max(0, min(S - H, C - H - X))`, where C is the server capacity above and each
  term exists only when its input does: S caps what this daemon's jobs hold together (the
  site's share), C - X is what the licence server can still hand out. With S = M (the usual
  case, "32 LS-DYNA licences"), that is S - H - X.
* X is what OTHER users and machines use: the server's used count minus what this daemon's
  own jobs hold *on the server*, never below 0 (`observe_server`). The caller passes its own
  figure: only jobs whose solver has already checked its licences out (running ones) may be
  subtracted. A job that was just admitted holds its licences here (H) but not yet on the
  server; subtracting it from the server count would count it twice as free and over-book.
* `take` never over-books: it raises `LicenseOverbooking` when any pool in the demand has
  fewer free licences than asked. The world can still shrink a pool under running jobs (a
  config reload, another user starting a job); then `free` is 0 until enough is released,
  and nothing new is admitted. `restore` is the one exception: a job re-adopted after a
  restart already holds its licences on the server, so it is booked unconditionally.
* Demands are `{pool: count}`; counts of 0 are ignored, negative counts are a programming
  error (ValueError).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from serv.errors import ExceedsMachine

__all__ = [
    "LicenseOverbooking",
    "LicensePools",
    "PoolState",
    "describe_demand",
]


class LicenseOverbooking(Exception):
    """`take` was asked for more licences than a pool has free (a scheduler bug: the caller
    must check `can_take` first). Carries the first short pool, what was asked and what was free."""

    def __init__(self, job_id: int, pool: str, wanted: int, free: int) -> None:
        super().__init__(
            f"job {job_id}: cannot take {_licences(wanted)} from pool {pool!r}: only {free} free"
        )
        self.job_id = job_id
        self.pool = pool
        self.wanted = wanted
        self.free = free


@dataclass(frozen=True, slots=True)
class PoolState:
    """One pool as `snapshot()` reports it (for getSystemHealth, the dashboard and logs).

    `size` is the configured size (None: not under `[licenses]`), `server_max` and
    `external`/`external_at` the last live reading (None: none), `held` what this daemon's
    jobs hold, `free` as `LicensePools.free` computes it (None: unlimited).
    """

    name: str
    size: int | None
    server_max: int | None
    external: int | None
    external_at: datetime | None
    held: int
    free: int | None


def _noun(count: int) -> str:
    return "licence" if count == 1 else "licences"


def _licences(count: int) -> str:
    return f"{count} {_noun(count)}"


def describe_demand(demand: Mapping[str, int]) -> str:
    """`demand` as text, e.g. "4 lsdyna licences, 1 prepost licence" ("no licences" if empty)."""
    parts = [f"{n} {pool} {_noun(n)}" for pool, n in sorted(demand.items()) if n > 0]
    return ", ".join(parts) if parts else "no licences"


def _clean(demand: Mapping[str, int]) -> dict[str, int]:
    """The non-zero entries of `demand`; ValueError on a negative or non-int count."""
    out: dict[str, int] = {}
    for pool, count in demand.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"licence demand for pool {pool!r} must be an int >= 0, got {count!r}")
        if count:
            out[pool] = count
    return out


class LicensePools:
    """Licence pools of this daemon: static sizes, live external use, and per-job holdings.

    Not thread-safe by design: only the daemon's loop thread calls it (module docstring).
    """

    def __init__(self, sizes: Mapping[str, int] | None = None) -> None:
        self._sizes: dict[str, int] = {}
        self._server_max: dict[str, int] = {}
        self._external: dict[str, int] = {}
        self._external_at: dict[str, datetime | None] = {}
        self._held: dict[int, dict[str, int]] = {}
        self.reconfigure(sizes or {})

    # -- configuration and live facts --------------------------------------------------

    def set_size(self, pool: str, size: int | None) -> None:
        """Set (or with None, remove) the configured size of `pool`, e.g. on a config reload.

        Holdings are kept: shrinking a pool below what running jobs hold leaves `free` at 0
        until they release. Idempotent.
        """
        if size is None:
            self._sizes.pop(pool, None)
            return
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"size of licence pool {pool!r} must be an int >= 0, got {size!r}")
        self._sizes[pool] = size

    def reconfigure(self, sizes: Mapping[str, int]) -> None:
        """Make the configured pools exactly `sizes` (`Config.licenses`); others become unconfigured."""
        for pool in list(self._sizes):
            if pool not in sizes:
                self.set_size(pool, None)
        for pool, size in sizes.items():
            self.set_size(pool, size)

    def set_external(
        self,
        pool: str,
        used_by_others: int,
        *,
        server_max: int | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record a live reading: `used_by_others` licences of `pool` are in use by other users
        or machines, the server has `server_max` in all (None: unknown), read at `at`.

        A negative `used_by_others` is clamped to 0 (the server can lag our own check-outs).
        """
        if server_max is not None and server_max < 0:
            raise ValueError(f"server maximum of pool {pool!r} must be >= 0, got {server_max}")
        self._external[pool] = max(0, used_by_others)
        self._external_at[pool] = at
        if server_max is None:
            self._server_max.pop(pool, None)
        else:
            self._server_max[pool] = server_max

    def observe_server(
        self,
        pool: str,
        server_used: int,
        own_on_server: int,
        *,
        server_max: int | None = None,
        at: datetime | None = None,
    ) -> int:
        """Record a licence-server reading of `pool` and return the others' use it implies.

        `server_used` is the server's count of licences in use (every user), `own_on_server`
        what this daemon's running jobs have checked out (never jobs still starting; see the
        module docstring). Others' use = `server_used - own_on_server`, never below 0.
        """
        used_by_others = max(0, server_used - max(0, own_on_server))
        self.set_external(pool, used_by_others, server_max=server_max, at=at)
        return used_by_others

    def clear_external(self, pool: str) -> None:
        """Forget the live reading of `pool` (the server cannot be read); idempotent.

        The pool falls back to its configured size alone, or to unlimited if it has none.
        """
        self._external.pop(pool, None)
        self._external_at.pop(pool, None)
        self._server_max.pop(pool, None)

    # -- queries -----------------------------------------------------------------------

    def limited_pools(self) -> set[str]:
        """The pools with a bound (a configured size or a server maximum); any other pool
        is unlimited."""
        return set(self._sizes) | set(self._server_max)

    def held(self, pool: str) -> int:
        """Licences of `pool` this daemon's jobs hold together."""
        return sum(demand.get(pool, 0) for demand in self._held.values())

    def held_by(self, job_id: int) -> dict[str, int]:
        """What `job_id` holds, `{pool: count}` (a copy; empty when it holds nothing)."""
        return dict(self._held.get(job_id, {}))

    def free(self, pool: str) -> int | None:
        """Licences of `pool` a new job may take now; None when the pool is unlimited."""
        size = self._sizes.get(pool)
        capacity = self._server_max.get(pool, size)
        if size is None and capacity is None:
            return None
        held = self.held(pool)
        bounds: list[int] = []
        if size is not None:
            bounds.append(size - held)
        if capacity is not None:
            bounds.append(capacity - held - self._external.get(pool, 0))
        return max(0, min(bounds))

    def capacity(self, pool: str) -> int | None:
        """The most licences of `pool` one job could ever get (min of size and server max);
        None when unlimited. Others' use is ignored: it may drop."""
        size = self._sizes.get(pool)
        server_max = self._server_max.get(pool)
        known = [n for n in (size, server_max) if n is not None]
        return min(known) if known else None

    def can_take(self, demand: Mapping[str, int]) -> bool:
        """True when every pool in `demand` has at least the count asked free now."""
        return self._first_short(_clean(demand)) is None

    def why_waiting(self, demand: Mapping[str, int]) -> str | None:
        """Why a job with `demand` cannot start now, e.g. "waiting for 4 lsdyna licences, 2 free";
        None when it can. Every short pool is named, in pool order, joined by "; "."""
        clean = _clean(demand)
        reasons = []
        for pool in sorted(clean):
            free = self.free(pool)
            if free is not None and clean[pool] > free:
                reasons.append(f"waiting for {clean[pool]} {pool} {_noun(clean[pool])}, {free} free")
        return "; ".join(reasons) or None

    def check_fits(self, demand: Mapping[str, int], param: str = "licenses") -> None:
        """Raise `ExceedsMachine` (1005) when `demand` can never be met, even with every licence
        free: it asks a pool for more than the pool's capacity. Waiting would be forever."""
        clean = _clean(demand)
        for pool in sorted(clean):
            capacity = self.capacity(pool)
            if capacity is not None and clean[pool] > capacity:
                raise ExceedsMachine(
                    f"param {param!r}: {_licences(clean[pool])} from pool {pool!r} "
                    f"exceed the {capacity} the pool has"
                )

    def snapshot(self) -> tuple[PoolState, ...]:
        """Every known pool (configured, read live, or held from), sorted by name."""
        names: set[str] = set(self._sizes) | set(self._external) | set(self._server_max)
        for demand in self._held.values():
            names.update(demand)
        return tuple(
            PoolState(
                name=pool,
                size=self._sizes.get(pool),
                server_max=self._server_max.get(pool),
                external=self._external.get(pool),
                external_at=self._external_at.get(pool),
                held=self.held(pool),
                free=self.free(pool),
            )
            for pool in sorted(names)
        )

    # -- bookings ----------------------------------------------------------------------

    def take(self, job_id: int, demand: Mapping[str, int]) -> dict[str, int]:
        """Book `demand` for `job_id` and return what it now holds.

        All or nothing: raises `LicenseOverbooking` (nothing booked) when a pool is short.
        Idempotent for the same demand: a job that already holds exactly this gets it back;
        a different demand for a job that holds licences raises ValueError (release first).
        """
        clean = _clean(demand)
        current = self._held.get(job_id)
        if current is not None:
            if current == clean:
                return dict(current)
            raise ValueError(
                f"job {job_id} already holds {describe_demand(current)}; "
                f"release them before taking {describe_demand(clean)}"
            )
        short = self._first_short(clean)
        if short is not None:
            pool, free = short
            raise LicenseOverbooking(job_id, pool, clean[pool], free)
        if clean:
            self._held[job_id] = clean
        return dict(clean)

    def restore(self, job_id: int, demand: Mapping[str, int]) -> dict[str, int]:
        """Book `demand` for a job re-adopted after a restart, even past a pool's free count:
        its solver already holds these licences on the server. Replaces what it held."""
        clean = _clean(demand)
        self._held.pop(job_id, None)
        if clean:
            self._held[job_id] = clean
        return dict(clean)

    def release(self, job_id: int) -> dict[str, int]:
        """Give back everything `job_id` holds and return it; idempotent (empty the second time)."""
        return self._held.pop(job_id, {})

    def holders(self) -> tuple[int, ...]:
        """Ids of the jobs that hold licences, in booking order."""
        return tuple(self._held)

    def _first_short(self, clean: Mapping[str, int]) -> tuple[str, int] | None:
        for pool in sorted(clean):
            free = self.free(pool)
            if free is not None and clean[pool] > free:
                return pool, free
        return None

