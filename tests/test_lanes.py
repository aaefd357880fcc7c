"""Lanes: per-thread order, parallel threads, and waiters that give up."""

from __future__ import annotations

import asyncio
import contextlib

from bot.lanes import Lanes, Ticket


async def test_one_job_at_a_time_per_key_in_join_order_and_keys_in_parallel() -> None:
    lanes = Lanes()
    log: list[str] = []
    hold_first = asyncio.Event()

    async def job(name: str, ticket: Ticket, hold: asyncio.Event | None = None) -> None:
        await ticket.ready()
        try:
            log.append(f"start {name}")
            if hold is not None:
                await hold.wait()
            log.append(f"end {name}")
        finally:
            ticket.release()

    tasks = []
    for name in ("a1", "a2", "a3"):
        ticket = lanes.join("a")  # joined synchronously, in this order
        tasks.append(asyncio.create_task(job(name, ticket, hold_first if name == "a1" else None)))
    assert lanes.queued == 3 and lanes.busy("a")

    await asyncio.wait_for(job("b1", lanes.join("b")), 5)  # another key is not held up by "a"
    assert log == ["start a1", "start b1", "end b1"]
    assert lanes.running == 1 and lanes.queued == 2

    hold_first.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [entry for entry in log if not entry.endswith("b1")] == [
        "start a1",
        "end a1",
        "start a2",
        "end a2",
        "start a3",
        "end a3",
    ]
    assert lanes.running == lanes.queued == 0


async def test_a_waiter_that_gives_up_does_not_let_the_next_job_jump_the_queue() -> None:
    lanes = Lanes()
    log: list[str] = []
    first = lanes.join("k")
    await first.ready()
    second, third = lanes.join("k"), lanes.join("k")

    waiting = asyncio.create_task(second.ready())
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    second.release()  # what `finally` does for a cancelled job

    async def run_third() -> None:
        await third.ready()
        log.append("third runs")
        third.release()

    task = asyncio.create_task(run_third())
    await asyncio.sleep(0)  # one loop step: a wrongly released job would run now
    log.append("first ends")
    first.release()
    await asyncio.wait_for(task, 5)

    assert log == ["first ends", "third runs"]
    assert lanes.running == lanes.queued == 0
