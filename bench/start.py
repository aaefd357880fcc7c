"""Start and restart: how soon a real `threadpilot run` takes messages, and how soon a
thread is answered again after the bot was killed.

Real processes (one Copilot runtime each) on the fake Slack (Socket Mode), the model the
instant fake in a process of its own; 10 runs of each, p50 and worst.

- start: from `threadpilot run` to its Socket Mode connection open at Slack
- first answer: from `threadpilot run` to the answer to a message sent as it starts,
  in a new thread, on a data directory of its own (the first start of the Copilot CLI
  there unpacks it, about two seconds)
- after SIGKILL: the bot answered a thread and was killed (SIGKILL, the runtime it started
  left to itself as a crash leaves it); from the next `threadpilot run` to the answer to
  a follow-up in that thread, sent as it starts

    python -m bench.start [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import tempfile
import time
from pathlib import Path

from bench.harness import bot_process, ms, remote_echo_model
from tests.fake_slack import BOT_USER, FakeSlack

_channels = (f"CS{n}" for n in itertools.count())


async def ask(slack: FakeSlack, channel: str, text: str, thread_ts: str | None = None) -> str:
    """Mention the bot (the event waits for a connection); return the thread's ts."""
    ts, events = slack.user_message(
        channel, f"<@{BOT_USER}> {text}", thread_ts=thread_ts, user=f"U{channel}"
    )
    for event in events:
        await slack.push("events_api", event, redeliver=True)
    return thread_ts or ts


async def answered(slack: FakeSlack, channel: str, thread: str, text: str) -> float:
    """When the bot's answer to `text` is whole in the thread (the echo model repeats it;
    a note of the bot's own, such as "I was restarted while answering", is not it)."""

    def done() -> bool:
        return any(
            m.text == f"echo: {text}" and not m.streaming for m in slack.replies(channel, thread)
        )

    await slack.wait_for(done)
    return time.monotonic()


async def one_start(slack: FakeSlack, data: Path, model_url: str) -> tuple[float, float]:
    """Seconds to connected and to the first answer, from the command."""
    before = slack.open_connections
    channel = next(_channels)
    began = time.monotonic()
    process = await bot_process(slack, data, model_url)
    try:
        asking = asyncio.create_task(ask(slack, channel, "hello"))
        await slack.wait_for(lambda: slack.open_connections > before)
        connected = time.monotonic() - began
        thread = await asking
        return connected, await answered(slack, channel, thread, "hello") - began
    finally:
        process.terminate()
        await process.wait()


async def one_crash(slack: FakeSlack, data: Path, model_url: str) -> float:
    """Seconds from the command after a SIGKILL to the answer in the old thread."""
    channel = next(_channels)
    process = await bot_process(slack, data, model_url)
    thread = await ask(slack, channel, "remember 42")
    await answered(slack, channel, thread, "remember 42")
    process.send_signal(signal.SIGKILL)
    await process.wait()
    began = time.monotonic()
    process = await bot_process(slack, data, model_url)
    try:
        await ask(slack, channel, "what was it?", thread)
        return await answered(slack, channel, thread, "what was it?") - began
    finally:
        process.terminate()
        await process.wait()


async def main(runs: int) -> None:
    slack = FakeSlack()
    await slack.start()
    starts: list[float] = []
    firsts: list[float] = []
    crashes: list[float] = []
    try:
        async with remote_echo_model() as model_url:
            with tempfile.TemporaryDirectory() as tmp:
                for run in range(runs):
                    connected, first = await one_start(slack, Path(tmp) / f"s{run}", model_url)
                    starts.append(connected)
                    firsts.append(first)
                    crashes.append(await one_crash(slack, Path(tmp) / f"k{run}", model_url))
    finally:
        await slack.stop()
    print(f"threadpilot run, {runs} runs each (real processes, fake Slack, instant fake model)")
    print(f"{'from `threadpilot run` to':<44} {'p50 ms':>8} {'worst':>8}")
    for name, values in (
        ("Slack connected", starts),
        ("the answer to a message sent at start", firsts),
        ("after SIGKILL: an old thread answered", crashes),
    ):
        print(f"{name:<44} {ms(values, 0.5)} {ms(values, 1.0)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="start and restart after SIGKILL")
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
