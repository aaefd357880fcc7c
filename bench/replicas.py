"""One workload against 1, 2 and 3 replicas on PostgreSQL, and one replica on SQLite.

Every fleet is real `threadpilot run` processes (one Copilot runtime each) on a fake Slack
of its own, whose Socket Mode hands each event to a random open connection; PostgreSQL is
a throwaway server, the model the instant fake in a process of its own. The fleets run
side by side, rounds interleaved, so the machine's noise falls on all of them alike. In a
round, every thread is asked once, all threads at once: a follow-up in its thread, which
whichever replica Slack picks must answer with the thread's history.

- turns/s: turns of a round over the round's wall time
- first text: from the message to the bot's first post in the thread, as a person waits
- moved: turns run by another replica than the thread's turn before (the session resumed
  there); a message that reaches another replica is handed over to the one that holds
  its thread's session, so this stays near 0 while replicas live

    python -m bench.replicas [--threads 20] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.harness import bot_process, ms, remote_echo_model
from tests.fake_slack import BOT_USER, FakeSlack
from tests.postgres import new_database, postgres_server


@dataclass
class Fleet:
    name: str
    replicas: int
    database: str  # a URL, or "" for SQLite in the first replica's data dir
    slack: FakeSlack = field(default_factory=FakeSlack)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    turns: int = 0
    wall_s: float = 0.0
    first_text: list[float] = field(default_factory=list)
    threads: dict[str, str] = field(default_factory=dict)  # channel -> thread ts


async def start(fleet: Fleet, tmp: Path, model_url: str) -> None:
    await fleet.slack.start()
    database = {"THREADPILOT_DATABASE_URL": fleet.database} if fleet.database else {}
    for n in range(fleet.replicas):
        before = fleet.slack.open_connections
        fleet.processes.append(
            await bot_process(fleet.slack, tmp / f"{fleet.name}-{n}", model_url, **database)
        )
        async with asyncio.timeout(120):
            await fleet.slack.wait_for(lambda n=before: fleet.slack.open_connections > n)


async def stop(fleet: Fleet) -> None:
    for process in fleet.processes:
        process.terminate()
    for process in fleet.processes:
        await process.wait()
    await fleet.slack.stop()


async def ask(fleet: Fleet, channel: str, text: str) -> float:
    """Seconds from the message to the bot's first post about it."""
    slack = fleet.slack
    thread_ts = fleet.threads.get(channel)
    ts, events = slack.user_message(
        channel, f"<@{BOT_USER}> {text}", thread_ts=thread_ts, user=f"U{channel}"
    )
    fleet.threads.setdefault(channel, ts)
    thread = fleet.threads[channel]
    asked = time.monotonic()
    answered = len(slack.replies(channel, thread))
    for event in events:
        await slack.push("events_api", event, redeliver=True)

    def posted() -> float | None:
        for call in slack.calls:
            args = call.args
            if (
                call.at >= asked
                and call.method in ("chat.postMessage", "chat.startStream")
                and args.get("channel") == channel
                and args.get("thread_ts") == thread
            ):
                return call.at
        return None

    first: float = await slack.wait_for(posted)
    await slack.wait_for(
        lambda: len([m for m in slack.replies(channel, thread) if not m.streaming]) > answered
    )
    return first - asked


async def round_of(fleet: Fleet, threads: int, text: str, measured: bool) -> None:
    start_at = time.perf_counter()
    waits = await asyncio.gather(
        *(ask(fleet, f"CB{fleet.name.upper()}{t}", f"{text} {t}") for t in range(threads))
    )
    if measured:
        fleet.wall_s += time.perf_counter() - start_at
        fleet.turns += threads
        fleet.first_text += waits


def moved_share(url: str) -> str:
    """Of the turns after each thread's first, those run by another replica than the
    thread's turn before."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT thread_id, replica FROM turns WHERE kind = 'turn' ORDER BY thread_id, id"
        ).fetchall()
    moved = total = 0
    for (thread, replica), (before_thread, before) in zip(rows[1:], rows, strict=False):
        if thread == before_thread:
            total += 1
            moved += replica != before
    return f"{moved / total:.0%}" if total else "-"


async def main(threads: int, rounds: int) -> None:
    with postgres_server() as server, tempfile.TemporaryDirectory() as tmp:
        fleets = [
            Fleet("sqlite1", 1, ""),
            Fleet("pg1", 1, new_database(server)),
            Fleet("pg2", 2, new_database(server)),
            Fleet("pg3", 3, new_database(server)),
        ]
        async with remote_echo_model() as model_url:
            try:
                for fleet in fleets:
                    await start(fleet, Path(tmp), model_url)
                for fleet in fleets:  # every thread has its session
                    await round_of(fleet, threads, "warm-up", measured=False)
                for r in range(rounds):
                    for fleet in fleets:
                        await round_of(fleet, threads, f"round {r}", measured=True)
            finally:
                for fleet in fleets:
                    await stop(fleet)
        report(fleets, threads, rounds)


def report(fleets: list[Fleet], threads: int, rounds: int) -> None:
    print(f"{threads} threads asking at once, {rounds} rounds (real processes, instant fake model)")
    print(
        f"{'fleet':>8} {'store':>10} {'replicas':>8} {'turns':>6} {'turns/s':>8} "
        f"{'x of pg1':>8} | {'first text p50':>14} {'p99':>8} | {'moved':>6}"
    )
    base = next(f for f in fleets if f.name == "pg1")
    base_rate = base.turns / base.wall_s
    for fleet in fleets:
        rate = fleet.turns / fleet.wall_s
        store = "PostgreSQL" if fleet.database else "SQLite"
        moved = moved_share(fleet.database) if fleet.database else "-"
        print(
            f"{fleet.name:>8} {store:>10} {fleet.replicas:>8} {fleet.turns:>6} {rate:>8.1f} "
            f"{rate / base_rate:>8.2f} | {ms(fleet.first_text, 0.5):>14} "
            f"{ms(fleet.first_text, 0.99)} | {moved:>6}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="1, 2 and 3 replicas on PostgreSQL vs SQLite")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.threads, args.rounds))
