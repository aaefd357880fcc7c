"""Replicas: several real `threadpilot` processes on one PostgreSQL and one fake Slack,
whose Socket Mode delivers each event to a random open connection. Every message is
answered once, with the thread's whole history, wherever it lands; a replica killed or
frozen mid-turn leaves its threads to the others; a stale owner leaves no trace."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from adapters.slack.sink import WAITING
from bot.app import INTERRUPTED
from tests.conftest import reap, start_bot, stop_bot
from tests.fake_model import FakeModel, Reply, ToolCall, user_texts
from tests.fake_slack import BOT_USER, FakeSlack
from tests.postgres import new_database

LEASE_TTL_S = 3  # short, so that a dead replica's threads are taken over quickly here


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process


@dataclass
class Fleet:
    url: str
    replicas: list[Replica]
    fake_slack: FakeSlack
    fake_model: FakeModel
    start: Any  # async (name) -> Replica

    def db(self, sql: str, *params: Any) -> list[Any]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()

    def owner_of(self, event_id: str) -> Replica:
        """The replica that took the event (its id holds its pid)."""
        ((replica,),) = self.db(
            "SELECT replica FROM turns WHERE event_id = %s", f"slack:{event_id}"
        )
        pid = int(replica.split("-")[-2])
        return next(r for r in self.replicas if r.process.pid == pid)


class FleetOf(Protocol):
    def __call__(self, size: int, **env: str) -> AbstractAsyncContextManager[Fleet]: ...


@pytest.fixture
def fleet_of(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path, postgres: str
) -> FleetOf:
    """`async with fleet_of(n, **env)`: n replicas on a database of their own, connected,
    `env` added to their environment."""

    @asynccontextmanager
    async def fleet(size: int, **env: str) -> AsyncIterator[Fleet]:
        url = new_database(postgres)
        replicas: list[Replica] = []

        async def start(name: str) -> Replica:
            data = tmp_path / name
            data.mkdir()
            before = fake_slack.open_connections
            process = await start_bot(
                data, fake_model, cli_path,
                **fake_slack.env,
                THREADPILOT_DATA_DIR=str(data / "data"),
                THREADPILOT_DATABASE_URL=url,
                THREADPILOT_LEASE_TTL_S=str(LEASE_TTL_S),
                **env,
            )  # fmt: skip
            replica = Replica(name, process)
            replicas.append(replica)
            await fake_slack.wait_for(lambda: fake_slack.open_connections > before)
            return replica

        try:
            for n in range(size):
                await start(f"r{n}")
            yield Fleet(url, replicas, fake_slack, fake_model, start)
        finally:
            # Shown should the test fail: the journal, the leases, and each replica's log.
            with psycopg.connect(url) as conn:
                for table in ("turns", "leases", "replicas"):
                    print(table, conn.execute(f"SELECT * FROM {table}").fetchall())
            for replica in replicas:
                if replica.process.returncode is None:
                    print(f"--- {replica.name}", await stop_bot(replica.process))
                else:
                    print(f"--- {replica.name}", await reap(replica.process))

    return fleet


async def say(
    fake_slack: FakeSlack, channel: str, text: str, thread_ts: str | None = None
) -> tuple[str, str]:
    """Someone of the channel's own mentions the bot; the events go out as Slack would
    send them (and again, should nobody acknowledge them). Returns the message's ts and
    its mention's event id."""
    ts, events = fake_slack.user_message(
        channel, f"<@{BOT_USER}> {text}", thread_ts=thread_ts, user=f"U{channel}"
    )
    for event in events:
        await fake_slack.push("events_api", event, redeliver=True)
    return ts, events[-1]["event_id"]


async def answers(fake_slack: FakeSlack, channel: str, thread_ts: str, count: int) -> list[str]:
    """The bot's messages in the thread, once there are `count` finished ones."""

    def finished() -> list[str] | None:
        texts = [m.text for m in fake_slack.replies(channel, thread_ts) if not m.streaming]
        done = [text for text in texts if text.startswith("echo:") or text.startswith("ℹ️")]
        return done if len(done) >= count else None

    async with asyncio.timeout(120):
        result: list[str] = await fake_slack.wait_for(finished)
    return result


async def test_thirty_threads_three_turns_each_on_two_replicas_answered_once_with_history(
    fleet_of: FleetOf, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    tag = uuid.uuid4().hex[:6]

    async def conversation(n: int) -> str:
        channel = f"CR{tag.upper()}{n}"
        ts, _ = await say(fake_slack, channel, f"{tag} t{n} turn 1")
        await answers(fake_slack, channel, ts, 1)
        for turn in (2, 3):
            await say(fake_slack, channel, f"{tag} t{n} turn {turn}", thread_ts=ts)
            await answers(fake_slack, channel, ts, turn)
        return channel

    async with fleet_of(2) as replicas:
        channels = await asyncio.gather(*(conversation(n) for n in range(30)))
        for n, channel in enumerate(channels):
            (ts,) = [m.ts for m in fake_slack.top_level(channel)]
            texts = [m.text for m in fake_slack.replies(channel, ts)]
            assert texts == [f"echo: {tag} t{n} turn {turn}" for turn in (1, 2, 3)]
            last = fake_model.requests_with(f"{tag} t{n} turn 3")
            assert len(last) == 1
            assert user_texts(last[0])[-3:] == [f"{tag} t{n} turn {turn}" for turn in (1, 2, 3)]
        # Both replicas took part, and each thread stayed where its session is: what
        # Slack sent elsewhere was handed over to it.
        takers = replicas.db(
            "SELECT DISTINCT replica FROM turns WHERE kind = 'turn' AND state = 'done'"
        )
        assert len(takers) == 2
        per_thread = replicas.db(
            "SELECT thread_id, COUNT(DISTINCT replica) FROM turns WHERE kind = 'turn' "
            "GROUP BY thread_id"
        )
        assert len(per_thread) == 30 and {count for _, count in per_thread} == {1}


async def test_turns_of_one_thread_keep_their_order_across_replicas(
    fleet_of: FleetOf, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    tag = uuid.uuid4().hex[:6]
    channel = f"CO{tag.upper()}"
    async with fleet_of(2):
        ts, _ = await say(fake_slack, channel, f"{tag} first")
        await answers(fake_slack, channel, ts, 1)
        # Five while the thread is busy, landing on either replica: each is shown waiting
        # (⏳), and they are answered in the order they came.
        gate = fake_model.hold(f"{tag} busy")
        await say(fake_slack, channel, f"{tag} busy", thread_ts=ts)
        await fake_model.wait_for_request(f"{tag} busy")
        for k in range(5):
            burst_ts, _ = await say(fake_slack, channel, f"{tag} burst {k}", thread_ts=ts)
            await fake_slack.wait_for(
                lambda t=burst_ts: ("add", t, WAITING) in fake_slack.reactions
            )
        gate.set()
        texts = await answers(fake_slack, channel, ts, 7)
        burst = [f"{tag} burst {k}" for k in range(5)]
        assert texts == [f"echo: {text}" for text in (f"{tag} first", f"{tag} busy", *burst)]
        last = fake_model.requests_with(f"{tag} burst 4")[-1]
        assert user_texts(last)[-7:] == [f"{tag} first", f"{tag} busy", *burst]


@pytest.mark.parametrize("how", ["killed", "frozen"])
async def test_a_replica_lost_mid_turn_leaves_the_thread_to_another(
    how: str, fleet_of: FleetOf, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    """Killed (SIGKILL) or frozen (SIGSTOP, then woken after its lease was taken): the
    thread is told once, the next message is answered by the other replica with the
    history, and the old owner, if it wakes, neither writes the session nor posts."""
    tag = uuid.uuid4().hex[:6]
    channel = f"CK{tag.upper()}"
    async with fleet_of(2) as replicas:
        ts, _ = await say(fake_slack, channel, f"{tag} remember 42")
        await answers(fake_slack, channel, ts, 1)
        gate = fake_model.hold(f"{tag} stuck")
        _, event_id = await say(fake_slack, channel, f"{tag} stuck", thread_ts=ts)
        await fake_model.wait_for_request(f"{tag} stuck")
        owner = replicas.owner_of(event_id)
        replicas.replicas.remove(owner)  # this test takes care of it
        try:
            await lose(how, owner, replicas, tag, ts=ts, gate=gate)
        finally:
            if owner.process.returncode is None:
                owner.process.send_signal(signal.SIGCONT)
            gate.set()
            print(f"--- {owner.name} (lost)", await reap(owner.process))


async def lose(
    how: str, owner: Replica, replicas: Fleet, tag: str, *, ts: str, gate: asyncio.Event
) -> None:
    """Lose `owner` (it runs the thread's turn held at `gate`), and what follows."""
    fake_slack, channel = replicas.fake_slack, f"CK{tag.upper()}"
    if how == "killed":
        owner.process.kill()
    else:
        owner.process.send_signal(signal.SIGSTOP)
    lost = asyncio.get_running_loop().time()
    told = await answers(fake_slack, channel, ts, 2)
    assert told[1] == f"ℹ️ {INTERRUPTED}"
    assert asyncio.get_running_loop().time() - lost < LEASE_TTL_S + 5

    await say(fake_slack, channel, f"{tag} what number?", thread_ts=ts)
    texts = await answers(fake_slack, channel, ts, 3)
    assert texts[2] == f"echo: {tag} what number?"
    request = replicas.fake_model.requests_with(f"{tag} what number?")[-1]
    assert f"{tag} remember 42" in user_texts(request)
    if how == "frozen":
        # Awake again, its model call answered: it notices it lost the thread, and
        # leaves no trace there.
        owner.process.send_signal(signal.SIGCONT)
        gate.set()
        assert owner.process.stderr is not None
        async with asyncio.timeout(30):
            while b"was taken over" not in await owner.process.stderr.readline():
                pass
        await stop_bot(owner.process)
        assert [m.text for m in fake_slack.replies(channel, ts)] == texts
        written = replicas.db(
            "SELECT count(*) FROM session_files WHERE content LIKE %s", f"%echo: {tag} stuck%"
        )
        assert written == [(0,)]


async def test_a_rolling_restart_under_traffic_loses_and_repeats_nothing(
    fleet_of: FleetOf, fake_slack: FakeSlack
) -> None:
    """Every replica in turn is stopped (SIGTERM) and replaced while people keep talking:
    each message is answered exactly once."""
    tag = uuid.uuid4().hex[:6]
    turns = 4

    async def conversation(n: int) -> tuple[str, str]:
        channel = f"CW{tag.upper()}{n}"
        ts, _ = await say(fake_slack, channel, f"{tag} w{n} turn 1")
        await answers(fake_slack, channel, ts, 1)
        for turn in range(2, turns + 1):
            await say(fake_slack, channel, f"{tag} w{n} turn {turn}", thread_ts=ts)
            await answers(fake_slack, channel, ts, turn)
        return channel, ts

    async with fleet_of(2) as replicas:
        talking = asyncio.gather(*(conversation(n) for n in range(10)))
        for old in list(replicas.replicas):
            await stop_bot(old.process)
            replicas.replicas.remove(old)
            await replicas.start(f"{old.name}-next")
        for n, (channel, ts) in enumerate(await talking):
            texts = [m.text for m in fake_slack.replies(channel, ts)]
            assert texts == [f"echo: {tag} w{n} turn {turn}" for turn in range(1, turns + 1)]


async def test_a_press_taken_by_another_replica_decides_for_the_agent_waiting_on_its_own(
    fleet_of: FleetOf, fake_model: FakeModel, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """The agent reads a file of its checkout and asks to write one; Socket Mode gives
    the press on the card to the other replica: that one decides (and updates the card),
    the agent waiting on the first goes on, and both files are the checkout's own on
    disk, not copies kept with the session's state in the database."""
    tag = uuid.uuid4().hex[:6]
    channel, asker = f"CA{tag.upper()}", f"UCA{tag.upper()}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text(f"readme {tag}\n")
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"default:\n  tools: [view]\n  ask: [create]\n"
                        f"  working_directory: {repo}\n  writable: true\n")  # fmt: skip
    for tool, arguments in (
        ("view", {"path": str(repo / "README.md")}),
        ("create", {"path": str(repo / "made.txt"), "file_text": tag}),
    ):
        fake_model.script(f"{tag} make it", Reply(tool_calls=[ToolCall(tool, arguments)]))
    async with fleet_of(2, THREADPILOT_PROFILES=str(profiles)):
        ts, events = fake_slack.user_message(channel, f"<@{BOT_USER}> {tag} make it", user=asker)
        for event in events:  # the last, the mention, goes to the replica that runs it
            taken_by = (await fake_slack.push("events_api", event)).socket

        def card() -> Any:
            replies = fake_slack.replies(channel, ts)
            return next((m for m in replies if any(b["type"] == "actions" for b in m.blocks)), None)

        shown = await fake_slack.wait_for(card)
        assert not (repo / "made.txt").exists()
        press = fake_slack.block_action(shown, "approval_once", asker)
        envelope = await fake_slack.push("interactive", press, avoid=taken_by)
        assert envelope.socket is not taken_by
        (answer,) = await answers(fake_slack, channel, ts, 1)
        assert answer.endswith(f"echo: {tag} make it")
        assert (repo / "made.txt").read_text() == tag
        assert any(
            f"Approved once by <@{asker}>" in element["text"]
            for block in shown.blocks
            if block["type"] == "context"
            for element in block["elements"]
        )
        follow_up = fake_model.requests_with(f"{tag} make it")[-1]
        results = [m["content"] for m in follow_up["messages"] if m["role"] == "tool"]
        assert f"readme {tag}" in results[0] and "Created file" in results[1]
