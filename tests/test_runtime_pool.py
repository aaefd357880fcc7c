"""The runtime pool on real Copilot CLIs: threads spread over several runtimes with every
history intact and each session live in one runtime at a time; a runtime that dies costs
only its own turns; tenants isolated from each other."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.errors import SessionNotFound
from bot.profiles import ThreadProfile
from bot.runtime import SessionSpec
from bot.runtime_pool import SHARED, RuntimePool
from bot.thread_key import NO_SERVER, ThreadKey
from bot.turns import RUNTIME_STOPPED_MESSAGE
from tests.conftest import Chat, FakeClock, make_settings
from tests.fake_model import FakeModel, Reply, ToolCall, user_texts


@asynccontextmanager
async def pool_chat(
    tmp_path: Path,
    fake_model: FakeModel,
    cli_path: Path,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> AsyncIterator[Chat]:
    clock = clock or FakeClock()
    settings = make_settings(
        tmp_path / "data",
        fake_model.base_url,
        user_turns_per_minute=0,
        thread_turns_per_minute=0,
        **overrides,
    )
    chat = await Chat.on_own_runtimes(settings, cli_path, tmp_path / "db.sqlite", clock)
    try:
        yield chat
    finally:
        await chat.app.close()


def handles(pool: RuntimePool) -> Counter[str]:
    """How many runtimes hold each session live, by the pool's own accounting."""
    return Counter(session for runtime in pool.runtimes() for session in runtime.live)


def forks(events_file: Path) -> list[str]:
    """Events of a session's history whose parent is not the event before them: what two
    processes appending to one session leave behind."""
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    return [
        event["type"]
        for before, event in itertools.pairwise(events)
        if event["parentId"] != before["id"]
    ]


async def test_a_pool_spreads_threads_keeps_every_history_and_one_handle_per_session(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    # Fewer live sessions than threads: sessions are evicted and resumed, often elsewhere.
    async with pool_chat(tmp_path, fake_model, cli_path, runtimes=3, max_live_sessions=10) as chat:
        pool = chat.app.runtimes
        seen_twice: list[Counter[str]] = []
        holders_seen: set[str] = set()

        def check(_request: dict[str, Any]) -> None:
            counts = handles(pool)
            seen_twice.extend([counts] if any(n > 1 for n in counts.values()) else [])
            holders_seen.update(r.name for r in pool.runtimes() if r.live)

        fake_model.observers.append(check)

        async def conversation(i: int) -> None:
            for turn in range(3):
                sink = await chat.say(f"pool-{i}", f"thread {i} turn {turn}")
                assert sink.errors == [] and sink.text == f"echo: thread {i} turn {turn}"
                check({})

        await asyncio.gather(*(conversation(i) for i in range(30)))

        assert seen_twice == []
        assert holders_seen == {"0", "1", "2"}  # every runtime served
        for i in range(30):
            last = fake_model.requests_with(f"thread {i} turn 2")[-1]
            assert user_texts(last) == [f"thread {i} turn {t}" for t in range(3)]
            record = await chat.thread(f"pool-{i}")
            events = pool.home(record.key) / "session-state" / record.session_id / "events.jsonl"
            assert forks(events) == [], i
        loads = {load.name: load for load in pool.loads()}
        assert sum(load.live_sessions for load in loads.values()) == chat.app.sessions.live_count
        assert chat.app.sessions.live_count <= 10
        metrics = chat.app.metrics.exposition().decode()
        for name in loads:
            assert f'threadpilot_runtime_up{{runtime="{name}"}} 1.0' in metrics
        status = await chat.app.status.text()
        assert "runtimes: Copilot CLI 1.0.102 (protocol 3), 3 shared" in status
        assert [line for line in status.splitlines() if line.startswith("  2: up, pid ")]


async def test_a_runtime_that_dies_costs_only_its_own_turns(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    async with pool_chat(tmp_path, fake_model, cli_path, runtimes=2) as chat:
        pool = chat.app.runtimes
        # A thread stays on its runtime while its session is live; they start apart: the
        # second goes where no turn is under way.
        first_gate = fake_model.hold("doomed: remember 42")
        first = asyncio.create_task(chat.say("doomed", "doomed: remember 42"))
        await fake_model.wait_for_request("doomed: remember 42")
        await chat.say("spared", "spared: hello")
        first_gate.set()
        await first
        doomed_gate = fake_model.hold("doomed, mid-turn")
        spared_gate = fake_model.hold("spared, mid-turn")
        doomed_turn = asyncio.create_task(chat.say("doomed", "doomed, mid-turn"))
        await fake_model.wait_for_request("doomed, mid-turn")
        # The doomed thread's runtime has a turn under way: the next one goes elsewhere.
        spared_turn = asyncio.create_task(chat.say("spared", "spared, mid-turn"))
        await fake_model.wait_for_request("spared, mid-turn")
        doomed_session = (await chat.thread("doomed")).session_id
        spared_session = (await chat.thread("spared")).session_id
        (doomed_runtime,) = pool.holders(doomed_session)
        (spared_runtime,) = pool.holders(spared_session)
        assert doomed_runtime != spared_runtime
        victim = next(r for r in pool.runtimes() if r.name == doomed_runtime)
        old_pid = victim.load().pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)

        told = await asyncio.wait_for(doomed_turn, 30)
        assert told.errors == [RUNTIME_STOPPED_MESSAGE]
        spared_gate.set()
        spared = await asyncio.wait_for(spared_turn, 30)
        assert spared.errors == [] and spared.text == "echo: spared, mid-turn"

        # Answered at once by the runtime still up (the other may still be restarting),
        # from the history on disk.
        after = await chat.say("doomed", "doomed: what number?")
        doomed_gate.set()
        assert after.errors == [] and after.text == "echo: doomed: what number?"
        assert user_texts(fake_model.requests_with("doomed: what number?")[-1])[0] == (
            "doomed: remember 42"
        )
        assert pool.holders(doomed_session) == [spared_runtime]
        await asyncio.wait_for(victim.wait_up(), 60)
        assert victim.restarts == 1 and victim.load().pid not in (None, old_pid)


async def test_tenants_have_runtimes_of_their_own_that_stop_when_idle(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    clock = FakeClock()
    async with pool_chat(
        tmp_path,
        fake_model,
        cli_path,
        clock,
        runtime_isolation="tenant",
        max_live_sessions=1,  # each message evicts the other tenant's session
        tools=("bash",),
    ) as chat:
        pool = chat.app.runtimes
        alpha = ThreadKey("slack", "TALPHA", "C1", "1800000000.000001")
        beta = ThreadKey("slack", "TBETA", "C1", "1800000000.000002")
        await chat.say(alpha, "alpha: the password is kiwi")
        alpha_file = pool.workspace(alpha) / "plans.txt"
        alpha_file.write_text("alpha's plans")
        alpha_session = (await chat.app.store.thread(alpha)).session_id  # type: ignore[union-attr]
        (alpha_runtime,) = [r for r in pool.runtimes() if r.name.startswith("slack-TALPHA")]
        alpha_pid = alpha_runtime.load().pid

        data = chat.app.settings.data_dir.resolve()
        attacks = [
            f"cat {alpha_file}",
            f"ls -R {data} | head -40",
            f"cat {pool.home(alpha).resolve()}/session-state/*/events.jsonl",
        ]
        fake_model.script(
            "beta: look around",
            Reply(tool_calls=[ToolCall("bash", {"command": c}) for c in attacks]),
        )
        await chat.say(beta, "beta: look around")

        (beta_runtime,) = [r for r in pool.runtimes() if r.name.startswith("slack-TBETA")]
        assert beta_runtime.load().pid != alpha_pid
        assert pool.home(alpha) != pool.home(beta)
        tool_output = " ".join(
            str(m["content"])
            for m in fake_model.requests_with("beta: look around")[-1]["messages"]
            if m["role"] == "tool"
        )
        assert "kiwi" not in tool_output and "alpha's plans" not in tool_output
        # Beta's runtime cannot resume, list or fork alpha's session.
        with pytest.raises(SessionNotFound):
            await beta_runtime.resume(
                SessionSpec(alpha_session, pool.workspace(beta), ThreadProfile())
            )
        listed = await beta_runtime.client.list_sessions()
        assert alpha_session not in [s.session_id for s in listed]
        with pytest.raises(SessionNotFound):
            await beta_runtime.fork(alpha_session)

        # Alpha holds no session now (beta's evicted it): idle long enough, its runtime stops.
        assert alpha_runtime.live == set()
        clock.advance(chat.app.settings.tenant_idle_s + 1)
        report = await chat.app.scheduler.idle_sweep()
        assert report.endswith("the runtimes of 1 idle tenants stopped"), report
        assert not alpha_runtime.up and [r.name for r in pool.runtimes()] == [beta_runtime.name]

        # Its next message starts them again, and the conversation goes on.
        again = await chat.say(alpha, "alpha: what is the password?")
        assert again.text == "echo: alpha: what is the password?"
        request = fake_model.requests_with("alpha: what is the password?")[-1]
        assert user_texts(request)[0] == "alpha: the password is kiwi"
        (restarted,) = [r for r in pool.runtimes() if r.name.startswith("slack-TALPHA")]
        assert restarted.load().pid not in (None, alpha_pid)


def test_tenants_are_workspaces_servers_and_each_discord_dm(tmp_path: Path) -> None:
    isolated = RuntimePool(
        make_settings(tmp_path, "http://unused", runtime_isolation="tenant"), tmp_path
    )
    slack = ThreadKey("slack", "T1", "C1", "1.1")
    assert isolated.tenant(slack) == isolated.tenant(ThreadKey("slack", "T1", "C2", "2.2"))
    assert isolated.tenant(slack) != isolated.tenant(ThreadKey("slack", "T2", "C1", "1.1"))
    server = ThreadKey("discord", "G1", "C1", "C1")
    assert isolated.tenant(server) != isolated.tenant(ThreadKey("discord", "G2", "C1", "C1"))
    dm_one = ThreadKey("discord", NO_SERVER, "D1", "D1")
    assert isolated.tenant(dm_one) != isolated.tenant(ThreadKey("discord", NO_SERVER, "D2", "D2"))
    assert isolated.workspace(slack).is_relative_to(tmp_path / "tenants")
    shared = RuntimePool(make_settings(tmp_path, "http://unused"), tmp_path)
    assert {shared.tenant(k) for k in (slack, server, dm_one)} == {SHARED}


def test_auto_runtimes_means_one_per_usable_core(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, THREADPILOT_RUNTIMES="auto")  # type: ignore[call-arg]
    assert settings.runtimes == len(os.sched_getaffinity(0))


async def test_runtimes_leave_the_default_executor_to_the_sdk(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    # The SDK writes every request through the loop's default executor (cores + 4 threads).
    # A runtime that held one of its threads for as long as its CLI runs starved it: here
    # with a one-thread executor and two runtimes, as with six on two cores.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    try:
        async with pool_chat(tmp_path, fake_model, cli_path, runtimes=2) as chat:
            async with asyncio.timeout(60):
                sink = await chat.say("starved", "anyone there?")
            assert sink.text == "echo: anyone there?"
    finally:
        loop.set_default_executor(ThreadPoolExecutor())
