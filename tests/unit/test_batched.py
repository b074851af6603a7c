"""serv.batched: blocking calls made together run in one thread hop, per key."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serv.batched import BatchedCalls
from tests.conftest import DEADLINE


async def test_calls_made_together_run_in_order_in_few_hops_and_each_gets_its_result() -> None:
    calls = BatchedCalls()
    seen: list[tuple[int, int]] = []
    hops = []
    run_batch = calls._run_batch

    def counted(*args: object) -> None:
        hops.append(1)
        run_batch(*args)  # type: ignore[arg-type]

    calls._run_batch = counted  # type: ignore[method-assign,assignment]

    def work(n: int) -> int:
        seen.append((n, threading.get_ident()))
        return n * n

    results = await asyncio.gather(*(calls.run("client", work, n) for n in range(50)))
    assert results == [n * n for n in range(50)]
    assert [n for n, _ in seen] == list(range(50))
    # All 50 are queued within one loop turn; the worker may take the first few before
    # the rest arrive, but not one hop per call.
    assert len(hops) <= 3
    assert threading.get_ident() not in {ident for _, ident in seen}  # never on the loop


async def test_an_exception_reaches_its_own_caller_only() -> None:
    calls = BatchedCalls()

    def work(n: int) -> int:
        if n == 3:
            raise FileNotFoundError(f"input {n}")
        return n

    outcomes = await asyncio.gather(*(calls.run("k", work, n) for n in range(6)), return_exceptions=True)
    assert [o for o in outcomes if not isinstance(o, Exception)] == [0, 1, 2, 4, 5]
    assert isinstance(outcomes[3], FileNotFoundError) and str(outcomes[3]) == "input 3"


async def test_a_blocked_batch_holds_up_its_own_key_only() -> None:
    calls = BatchedCalls()
    release = threading.Event()

    def stuck() -> str:
        assert release.wait(DEADLINE), "never released"
        return "slow"

    slow = asyncio.ensure_future(calls.run("first", stuck))
    await asyncio.sleep(0)  # its batch is on its way to a thread
    assert await asyncio.wait_for(calls.run("second", lambda: "other"), DEADLINE) == "other"
    assert not slow.done()
    release.set()
    assert await asyncio.wait_for(slow, DEADLINE) == "slow"


async def test_a_cancelled_caller_leaves_the_others_of_its_batch_alone() -> None:
    calls = BatchedCalls()
    release = threading.Event()

    def gated(n: int) -> int:
        assert release.wait(DEADLINE), "never released"
        return n

    first = asyncio.ensure_future(calls.run("k", gated, 1))
    second = asyncio.ensure_future(calls.run("k", gated, 2))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await asyncio.wait_for(second, DEADLINE) == 2
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_calls_run_on_the_executor_given() -> None:
    """The tail thread's reads at jobs' ends: on that one thread, never another."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="only")
    try:
        calls = BatchedCalls(pool)
        names = await asyncio.gather(*(calls.run("ends", lambda: threading.current_thread().name) for _ in range(5)))
        assert {name.split("_")[0] for name in names} == {"only"}
    finally:
        pool.shutdown(wait=True)
