"""New threads at once: how soon each one's model request starts.

Real `threadpilot run` processes, one with one Copilot runtime and one with two (one per
core here), side by side, each on a fake Slack of its own, answered by one fake model;
all fakes in this process, which notes when each request reaches the model. In each run,
mentions open N new threads at once (N = 1, then 10); from the moment the events go out
to the moment the model has every thread's request. 10 runs each, p50 and worst.

    python -m bench.new_threads [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import bot_process, ms
from tests.fake_model import FakeModel, last_user_text
from tests.fake_slack import BOT_USER, FakeSlack

_channels = (f"CN{n}" for n in itertools.count())


async def opened(slack: FakeSlack, model: FakeModel, threads: int) -> float:
    """Seconds from N new threads' mentions to the model's having all their requests."""
    channels = [next(_channels) for _ in range(threads)]
    arrived: dict[str, float] = {}
    every = asyncio.Event()

    def note(body: dict[str, Any]) -> None:
        for channel in channels:
            if f"open {channel}" in last_user_text(body):
                arrived.setdefault(channel, time.monotonic())
        if len(arrived) == threads:
            every.set()

    model.observers.append(note)
    events, threads_ts = [], []
    for channel in channels:
        ts, more = slack.user_message(channel, f"<@{BOT_USER}> open {channel}", user=f"U{channel}")
        events += more
        threads_ts.append(ts)
    began = time.monotonic()
    await asyncio.gather(*(slack.push("events_api", event) for event in events))
    async with asyncio.timeout(60):
        await every.wait()
        # Every answer finished before the next burst: else it measures this one's streaming.
        await slack.wait_for(
            lambda: all(
                any(not m.streaming and m.text.startswith("echo:") for m in slack.replies(c, ts))
                for c, ts in zip(channels, threads_ts, strict=True)
            )
        )
    model.observers.remove(note)
    return max(arrived.values()) - began


async def main(runs: int) -> None:
    model = FakeModel()
    await model.start()
    bots = {runtimes: FakeSlack() for runtimes in (1, 2)}
    results: dict[tuple[int, int], list[float]] = {
        (runtimes, threads): [] for runtimes in bots for threads in (1, 10)
    }
    processes: list[asyncio.subprocess.Process] = []
    try:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            for runtimes, slack in bots.items():
                await slack.start()
                data = Path(tmp) / f"runtimes{runtimes}"
                processes.append(
                    await bot_process(
                        slack, data, model.base_url, THREADPILOT_RUNTIMES=str(runtimes)
                    )
                )
                for _ in range(runtimes):  # every runtime is up, its first-use costs paid
                    await opened(slack, model, 1)
            for _ in range(runs):
                for (runtimes, threads), times in results.items():
                    times.append(await opened(bots[runtimes], model, threads))
    finally:
        for process in processes:
            process.terminate()
            await process.wait()
        for slack in bots.values():
            await slack.stop()
        await model.stop()
    print(f"new threads at once, {runs} runs each (real processes, fake Slack and model)")
    print(f"{'runtimes':>8} {'threads':>8} {'all model requests in, p50 ms':>30} {'worst':>8}")
    for (runtimes, threads), times in results.items():
        print(f"{runtimes:>8} {threads:>8} {ms(times, 0.5):>30} {ms(times, 1.0)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="new threads' model requests, 1 vs 10 at once")
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
