"""How a streamed answer feels in the thread: Slack (chat.startStream and chat.update) and
Discord, each through its real client against the fakes in tests/, with the real Copilot
CLI on the fake model and the adapters' own edit interval (1 s). Over RUNS answers each,
p50 and worst:

(a) a short answer (two sentences, written in ~0.2 s): seconds from the first characters
    visible in the thread to the whole text visible;
(b) a 2,000-token answer written over ~9 s: the longest stretch with no visible growth
    across all the bot's messages in the thread (from the first characters to the whole
    answer), API calls per answer, and the shortest gap between two changes of the same
    message (its creation included).

    python -m bench.answer_feel [runs]
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from bench.harness import Stoppable, start_app
from bot.app import App
from tests.fake_discord import BOT_ID, GUILD_ID, TEXT_CHANNEL, TOKEN, FakeDiscord
from tests.fake_model import FakeModel, Reply
from tests.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack

RUNS = 10
SHORT = (
    "The build fails because the lock file pins an older version of the parser. "
    "Run the update command, commit the new lock file, and push again."
)
# One token a word, in paragraphs of 100: long enough to need several messages.
LONG = "\n\n".join(" ".join(f"w{i}" for i in range(p, p + 100)) for p in range(0, 2_000, 100))


@dataclass
class Seen:
    """What the thread showed over one answer: (when, characters visible) at each change,
    and for each message of the bot the times it was created or changed."""

    growth: list[tuple[float, int]]
    changes: list[list[float]]
    calls: int

    def first_to_whole(self) -> float:
        return self.growth[-1][0] - self.growth[0][0]

    def longest_stall(self) -> float:
        """The longest time without more characters visible than ever before."""
        times, most = [], 0
        for at, visible in self.growth:
            if visible > most:
                times.append(at)
                most = visible
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def min_gap(self) -> float:
        gaps = [b - a for changes in self.changes for a, b in itertools.pairwise(changes)]
        return min(gaps, default=float("inf"))


async def watch(
    wait_for: Callable[[Callable[[], bool]], Awaitable[object]],
    shown: Callable[[], list[str]],
    done: Callable[[], bool],
) -> list[tuple[float, int]]:
    """Record the characters visible after every request the fake serves, until `done`."""
    growth: list[tuple[float, int]] = []

    def check() -> bool:
        visible = sum(len(text) for text in shown())
        if visible and (not growth or growth[-1][1] != visible):
            growth.append((time.monotonic(), visible))
        return done()

    await wait_for(check)
    return growth


class SlackThread:
    def __init__(self, slack: FakeSlack, model: FakeModel) -> None:
        self.slack, self.model = slack, model
        self.runs = itertools.count()

    async def answer(self, streaming: bool, text: str, reply: Reply) -> Seen:
        slack = self.slack
        slack.streaming_enabled = streaming
        channel = f"CFEEL{int(streaming)}X{next(self.runs)}"
        self.model.script(f"question in {channel}", reply)
        ts, events = slack.user_message(channel, f"<@UBOT> question in {channel}")
        before = len(slack.calls)
        for event in events:
            await slack.push("events_api", event)

        def shown() -> list[str]:
            return [m.text for m in slack.replies(channel, ts)]

        def done() -> bool:
            replies = slack.replies(channel, ts)
            return not any(m.streaming for m in replies) and "\n\n".join(shown()) == text

        growth = await watch(slack.wait_for, shown, done)
        calls = [
            c
            for c in slack.calls[before:]
            if c.args.get("channel", c.args.get("channel_id")) == channel
        ]
        created = iter(
            c.at
            for c in calls
            if c.method in ("chat.startStream", "chat.postMessage")
            and c.args.get("thread_ts") == ts
        )
        changes = [
            [next(created), *(c.at for c in calls if c.args.get("ts") == m.ts)]
            for m in slack.replies(channel, ts)
        ]
        return Seen(growth, changes, len(calls))


class DiscordThread:
    def __init__(self, discord: FakeDiscord, model: FakeModel) -> None:
        self.discord, self.model = discord, model
        self.runs = itertools.count()

    async def answer(self, text: str, reply: Reply) -> Seen:
        discord = self.discord
        question = f"question {next(self.runs)}"
        self.model.script(question, reply)
        before = len(discord.calls)
        thread = (await discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> {question}")).id

        def shown() -> list[str]:
            posted = discord.by_bot(thread)
            return [m.content for m in posted] + [f.decode() for m in posted for f in m.files]

        def done() -> bool:
            posted = discord.by_bot(thread)
            whole = "\n\n".join(m.content for m in posted)
            return whole == text or any(m.files == [text.encode()] for m in posted)

        growth = await watch(discord.wait_for, shown, done)
        calls = discord.calls[before:]
        created = iter(
            c.at for c in calls if c.method == "POST" and c.path == f"/channels/{thread}/messages"
        )
        changes = [
            [next(created), *(c.at for c in calls if c.method == "PATCH" and c.path.endswith(m.id))]
            for m in discord.by_bot(thread)
        ]
        return Seen(growth, changes, len(calls))


def _row(name: str, values: list[float], unit: str = "s") -> str:
    ordered = sorted(values)
    p50 = ordered[len(ordered) // 2]
    return f"  {name:<44} p50 {p50:6.2f}{unit}   worst {ordered[-1]:6.2f}{unit}"


async def measure(name: str, answer: Callable[[str, Reply], Awaitable[Seen]], runs: int) -> None:
    print(name)
    short = [
        await answer(SHORT, Reply(text=SHORT, chunks=10, chunk_delay=0.02)) for _ in range(runs)
    ]
    print(_row("(a) short: first characters -> whole text", [s.first_to_whole() for s in short]))
    long = [
        await answer(LONG, Reply(text=LONG, chunks=2_000, chunk_delay=0.004)) for _ in range(runs)
    ]
    print(_row("(b) long: longest stretch without growth", [s.longest_stall() for s in long]))
    print(_row("    long: first characters -> whole answer", [s.first_to_whole() for s in long]))
    calls = sorted(float(s.calls) for s in long)
    print(_row("    long: API calls per answer", calls, unit=" "))
    gap = min(s.min_gap() for s in long)
    print(f"  {'    long: min gap between changes of a message':<44} {gap:10.2f}s")


async def main(runs: int) -> None:
    slack, discord = FakeSlack(), FakeDiscord()
    await slack.start()
    await discord.start()
    with tempfile.TemporaryDirectory() as tmp:
        model = FakeModel()

        async def slack_bot(model_url: str) -> tuple[App, Stoppable]:
            app = await start_app(
                Path(tmp) / "slack", model_url, slack_bot_token=BOT_TOKEN,
                slack_app_token=APP_TOKEN, slack_api_url=slack.api_url,
            )  # fmt: skip
            adapter = SlackAdapter(app.router, app.settings)
            await adapter.start()
            return app, adapter

        async def discord_bot(model_url: str) -> tuple[App, Stoppable]:
            app = await start_app(
                Path(tmp) / "discord", model_url, discord_token=TOKEN,
                discord_api_url=discord.api_url, discord_gateway_url=discord.gateway_url,
                discord_guild_ids=(int(GUILD_ID),),
            )  # fmt: skip
            adapter = DiscordAdapter(app.router, app.settings, guild_ready_timeout=0.1)
            await adapter.start()
            return app, adapter

        async def slack_body() -> None:
            thread = SlackThread(slack, model)
            for streaming in (True, False):
                mode = "chat.startStream" if streaming else "chat.update"
                await measure(
                    f"Slack, {mode}",
                    lambda text, reply, s=streaming: thread.answer(s, text, reply),
                    runs,
                )

        async def discord_body() -> None:
            await measure("Discord", DiscordThread(discord, model).answer, runs)

        await model.start()
        try:
            for bot, body in ((slack_bot, slack_body), (discord_bot, discord_body)):
                app, adapter = await bot(model.base_url)
                try:
                    await body()
                finally:
                    await adapter.stop()
                    await app.close()
        finally:
            await model.stop()
    await slack.stop()
    await discord.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS))
