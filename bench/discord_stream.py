"""Discord: API calls per streamed answer, and time to first visible text.

Runs the real Discord adapter (discord.py) against the fake Discord from tests/, the real
Copilot CLI against the fake model, and measures:

1. a 2,000-token answer streamed over ~10 s into a thread started by a mention: REST
   calls, the shortest gap between two edits of the message it grows in (target: at
   least 1 s), and whether the messages in Discord add up exactly to the answer.
2. from the mention's dispatch on the gateway to the first answer text posted in the
   thread, with an instant model, at 1 and 50 concurrent threads: p50 and p99.

    python -m bench.discord_stream
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from pathlib import Path

from adapters.discord import DiscordAdapter
from bench.harness import print_latency, start_app
from bot.app import App
from tests.fake_discord import BOT_ID, GUILD_ID, TEXT_CHANNEL, TOKEN, FakeDiscord
from tests.fake_model import FakeModel, Reply

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 2_000


async def streamed_answer(discord: FakeDiscord, model: FakeModel) -> str:
    answer = "\n\n".join(
        " ".join(f"w{i}" for i in range(start, start + 100)) for start in range(0, TOKENS, 100)
    )
    model.script("long answer", Reply(text=answer, chunks=TOKENS, chunk_delay=0.005))
    calls_before = len(discord.calls)
    message = await discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> long answer")
    thread = message.id  # a thread started from a message takes its id

    def exact() -> bool:
        """The messages add up to the answer, or (a long one) its file does."""
        posted = discord.by_bot(thread)
        whole = "\n\n".join(m.content for m in posted)
        return whole == answer or any(m.files == [answer.encode()] for m in posted)

    await discord.wait_for(exact)
    calls = discord.calls[calls_before:]
    live = discord.by_bot(thread)[0].id
    opened = next(
        c.at for c in calls if c.method == "POST" and c.path == f"/channels/{thread}/messages"
    )
    edits = [opened, *(c.at for c in calls if c.method == "PATCH" and c.path.endswith(live))]
    gap = min(b - a for a, b in itertools.pairwise(edits))
    by_route: dict[str, int] = {}
    for call in calls:
        route = "typing" if "typing" in call.path else f"{call.method} {_kind(call.path)}"
        by_route[route] = by_route.get(route, 0) + 1
    detail = ", ".join(f"{route} {n}" for route, n in sorted(by_route.items()))
    return (
        f"{len(calls):>3} REST calls over {edits[-1] - edits[0]:4.1f}s, {len(edits) - 1:>3} edits, "
        f"min {gap:4.2f}s apart, exact {exact()}  ({detail})"
    )


def _kind(path: str) -> str:
    if path.endswith("/threads"):
        return "thread"
    return "message" if "/messages" in path else path


async def first_text(discord: FakeDiscord, concurrency: int, rounds: int) -> list[float]:
    latencies: list[float] = []
    for r in range(rounds):
        sent = []
        for n in range(concurrency):
            started = time.monotonic()
            sent.append((await discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> r{r} hello {n}"), started))
        for message, started in sent:

            def answered(thread: str = message.id) -> list[float]:
                return [
                    c.at
                    for c in discord.calls
                    if c.method == "POST" and c.path == f"/channels/{thread}/messages"
                ]

            at = await discord.wait_for(answered)
            latencies.append(at[0] - started)
        for message, _ in sent:  # let each answer finish before the next round
            await discord.wait_for(
                lambda t=message.id: any(m.content.startswith("echo:") for m in discord.by_bot(t))
            )
    return latencies


async def _bot(tmp: Path, model_url: str, discord: FakeDiscord) -> tuple[App, DiscordAdapter]:
    app = await start_app(
        tmp, model_url, discord_token=TOKEN, discord_api_url=discord.api_url,
        discord_gateway_url=discord.gateway_url, discord_guild_ids=(int(GUILD_ID),),
        max_live_sessions=200,
    )  # fmt: skip
    adapter = DiscordAdapter(app.router, app.settings, guild_ready_timeout=0.1)
    await adapter.start()
    return app, adapter


async def main() -> None:
    discord = FakeDiscord()
    await discord.start()
    with tempfile.TemporaryDirectory() as tmp:
        model = FakeModel()
        await model.start()
        app, adapter = await _bot(Path(tmp) / "paced", model.base_url, discord)
        print(f"Discord REST calls for one {TOKENS:,}-token answer streamed over ~10 s")
        print("  " + await streamed_answer(discord, model))
        await adapter.stop()
        await app.close()
        await model.stop()

        await print_latency(
            "mention dispatched -> first answer text in its thread (instant model), ms",
            lambda model_url: _bot(Path(tmp) / "latency", model_url, discord),
            lambda concurrency, rounds: first_text(discord, concurrency, rounds),
        )
    await discord.stop()


if __name__ == "__main__":
    asyncio.run(main())
