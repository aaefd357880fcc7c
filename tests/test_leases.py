"""Leases between replicas, on a real PostgreSQL: one owner per thread, a waiter woken by
the owner letting go (NOTIFY, not polling), turns behind earlier entries of others."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.clock import system_clock
from bot.errors import LeaseLost
from bot.journal import Journal
from bot.leases import Leases
from bot.profiles import Profiles
from bot.runtime import CopilotRuntime, SessionSpec
from bot.shell_tool import MOVED
from bot.store import Store
from bot.thread_key import ThreadKey
from bot.turns import Turn
from tests.conftest import make_settings
from tests.fake_model import FakeModel, Reply, ToolCall
from tests.postgres import new_database
from tests.test_security import tool_results

KEY = ThreadKey("slack", "T1", "C1", "1.0")


@pytest.fixture
async def stores(postgres: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two replicas' stores: connections of their own to one database."""
    url = new_database(postgres)
    one, two = await Store.open(url), await Store.open(url)
    yield one, two
    await one.close()
    await two.close()


async def test_a_waiting_replica_is_woken_when_the_owner_lets_go(
    stores: tuple[Store, Store],
) -> None:
    one = stores[0]
    # Polling once an hour: only the owner's NOTIFY can wake the waiter in time.
    owner, waiter = (Leases(store, system_clock, poll_s=3600) for store in stores)
    await owner.start()
    await waiter.start()
    try:
        thread = await one.ensure_thread(KEY)
        assert await owner.take(thread.id) is not None
        waited = asyncio.Event()

        async def waiting() -> None:
            waited.set()

        taking = asyncio.create_task(waiter.hold(thread.id, None, waiting))
        await waited.wait()  # it asked, and found the thread taken
        assert not taking.done()
        await owner.let_go(thread.id)
        async with asyncio.timeout(10):
            assert await taking is True  # taken, and the thread may have changed meanwhile
        assert waiter.held(thread.id) is not None and owner.held(thread.id) is None
    finally:
        await owner.leave()
        await waiter.leave()


async def test_a_turn_waits_behind_what_another_replica_received_first(
    stores: tuple[Store, Store],
) -> None:
    one, two = stores
    first, second = Leases(one, system_clock), Leases(two, system_clock)
    await first.heartbeat()
    await second.heartbeat()
    early = await Journal(one, system_clock, first.id).claim("slack:Ev1", KEY, "turn")
    late = await Journal(two, system_clock, second.id).claim("slack:Ev2", KEY, "turn")
    assert early is not None and late is not None and early.thread is not None
    thread_id = early.thread.id
    # The second replica held the thread for something of its own; its later entry waits,
    # and it lets the thread go to the replica whose entry came first.
    assert await second.take(thread_id) is not None
    assert await second.take(thread_id, late.turn_id) is None
    assert second.held(thread_id) is None
    assert await first.take(thread_id, early.turn_id) is not None


async def test_of_two_replicas_taking_a_thread_at_once_one_gets_it(
    stores: tuple[Store, Store],
) -> None:
    """The last owner taking its thread back keeps the epoch; another replica taking it
    at the same moment must still lose (a lease is compared on all it holds)."""
    one, two = stores
    last, other = Leases(one, system_clock), Leases(two, system_clock)
    for n in range(20):
        thread = await one.ensure_thread(ThreadKey("slack", "T1", "C2", str(n)))
        assert await last.take(thread.id) is not None
        await last.let_go(thread.id)
        taken = await asyncio.gather(last.take(thread.id), other.take(thread.id))
        assert sum(fence is not None for fence in taken) == 1, (n, taken)


async def test_tools_of_a_replica_that_lost_the_thread_do_nothing_more(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    """A replica frozen past its lease wakes with the turn under way: the agent's file
    tools and commands there are refused (another replica answers the thread now); with
    the lease held, the same calls act."""
    settings = make_settings(tmp_path / "data", fake_model.base_url, tools=("create", "bash"))
    runtime = CopilotRuntime(settings, cli_path)
    await runtime.start()
    profile = dataclasses.replace(
        Profiles(settings).resolve(ThreadKey("slack", "T1", "C1", "1")), writable=True
    )

    async def lost() -> None:
        raise LeaseLost("thread 1 was taken over")

    async def held() -> None:
        return None

    try:
        for name, confirm in (("lost", lost), ("held", held)):
            workspace = tmp_path / name
            workspace.mkdir()
            calls = [
                ToolCall("create", {"path": str(workspace / "made.txt"), "file_text": name}),
                ToolCall("bash", {"command": "touch ran"}),
            ]
            fake_model.script(f"act {name}", Reply(tool_calls=calls))
            spec = SessionSpec(f"moved-{name}", workspace, profile, confirm=confirm)
            turn = Turn(await runtime.create(spec), f"act {name}", (), 60, runtime)
            await turn.send()
            async for _ in turn.events():
                pass
            results = tool_results(fake_model.requests_with(f"act {name}")[-1])
            if name == "lost":
                assert len(results) == 2 and all(MOVED in result for result in results)
                assert sorted(p.name for p in workspace.iterdir()) == []
            else:
                assert sorted(p.name for p in workspace.iterdir()) == ["made.txt", "ran"]
    finally:
        await runtime.stop()
