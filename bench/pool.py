"""One Copilot runtime against several: 50 threads asking at once.

The same workload on three apps, with THREADPILOT_RUNTIMES = 1, 2 and 4, all running in
this one process against the instant fake model (in a process of its own, as a remote
provider would be). Rounds are interleaved across the apps so the machine's noise falls
on all of them alike. Each app's threads first get a live session (a warm-up turn each,
not measured); then in every round all of them ask at once.

- turns/s: turns of a round over the round's wall time
- first text: from a message to the first text of its answer, as a person waits for it
- CLI CPU/turn: CPU time of the app's Copilot CLI processes, per turn
- bot CPU/turn: CPU time of this process while the app's round ran, per turn
- CLI RSS: resident memory of the app's CLI processes after the run

    python -m bench.pool [--threads 50] [--rounds 5] [--runtimes 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import ms, remote_echo_model, start_app
from bot.app import App
from bot.inbound import Inbound
from bot.replies import FinalText, OpenedThread, ReplyEvent, TextDelta
from bot.thread_key import ThreadKey

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


class FirstTextSink:
    """Records when the first text of the answer arrived."""

    def __init__(self) -> None:
        self.first_text_at: float | None = None

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        async for event in events:
            if self.first_text_at is None and isinstance(event, TextDelta | FinalText):
                self.first_text_at = time.perf_counter()
        return ["ref"]

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        raise NotImplementedError


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S


@dataclass
class Result:
    runtimes: int
    turns: int = 0
    wall_s: float = 0.0
    first_text: list[float] = field(default_factory=list)
    cli_cpu_s: float = 0.0
    bot_cpu_s: float = 0.0
    failed: int = 0


async def ask(app: App, key: ThreadKey, text: str) -> float | None:
    """Seconds to the first text of the answer; None if none came."""
    sink = FirstTextSink()
    inbound = Inbound(event_id=f"{key.thread}-{text}", key=key, user_id="U", text=text)
    start = time.perf_counter()
    await app.router.dispatch(inbound, sink)
    return None if sink.first_text_at is None else sink.first_text_at - start


async def burst(app: App, keys: list[ThreadKey], text: str, result: Result) -> None:
    pids = [load.pid for load in app.runtimes.loads()]
    cli_before = sum(cpu_seconds(pid) for pid in pids)
    bot_before = time.process_time()
    start = time.perf_counter()
    waits = await asyncio.gather(*(ask(app, key, text) for key in keys))
    result.wall_s += time.perf_counter() - start
    result.bot_cpu_s += time.process_time() - bot_before
    result.cli_cpu_s += sum(cpu_seconds(pid) for pid in pids) - cli_before
    result.turns += len(keys)
    result.first_text += [w for w in waits if w is not None]
    result.failed += sum(w is None for w in waits)


async def main(threads: int, rounds: int, sizes: list[int]) -> None:
    async with remote_echo_model() as model_url:
        with tempfile.TemporaryDirectory() as tmp:
            apps: dict[int, App] = {}
            try:
                for n in sizes:
                    apps[n] = await start_app(
                        Path(tmp) / f"runtimes-{n}", model_url, runtimes=n, max_live_sessions=1000
                    )
                await measure(apps, threads, rounds)
            finally:
                for app in apps.values():
                    await app.close()


async def measure(apps: dict[int, App], threads: int, rounds: int) -> None:
    keys = {n: [ThreadKey("slack", "TB", f"C{n}", str(t)) for t in range(threads)] for n in apps}
    for n, app in apps.items():
        await burst(app, keys[n], "warm-up", Result(n))  # every thread's session live
    results = {n: Result(n) for n in apps}
    for r in range(rounds):
        for n, app in apps.items():
            await burst(app, keys[n], f"round {r}", results[n])

    print(f"{threads} threads asking at once, {rounds} rounds (instant fake model, real CLIs)")
    print(
        f"{'runtimes':>8} {'turns':>6} {'failed':>6} {'turns/s':>8} {'x of 1':>7} | "
        f"{'first text p50':>14} {'p99':>8} | {'CLI CPU/turn':>12} {'bot CPU/turn':>12} | "
        f"{'CLI RSS MiB':>11}"
    )
    base = results[min(results)]
    base_rate = base.turns / base.wall_s
    for n, result in results.items():
        rate = result.turns / result.wall_s
        rss = sum(load.rss_bytes or 0 for load in apps[n].runtimes.loads())
        print(
            f"{n:>8} {result.turns:>6} {result.failed:>6} {rate:>8.1f} {rate / base_rate:>7.2f} | "
            f"{ms(result.first_text, 0.5):>14} {ms(result.first_text, 0.99)} | "
            f"{result.cli_cpu_s / result.turns * 1000:>9.1f} ms "
            f"{result.bot_cpu_s / result.turns * 1000:>9.1f} ms | {rss / 2**20:>11.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="1 vs N Copilot runtimes under load")
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runtimes", default="1,2,4", help="pool sizes to compare")
    args = parser.parse_args()
    asyncio.run(main(args.threads, args.rounds, [int(n) for n in args.runtimes.split(",")]))
