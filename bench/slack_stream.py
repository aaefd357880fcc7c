"""Slack: API calls per streamed answer, and time to first visible text.

Runs the real Slack adapter (slack-bolt, Socket Mode) against the fake Slack from tests/,
the real Copilot CLI against the fake model, and measures:

1. a 2,000-token answer streamed over ~10 s: API calls, the shortest gap between two
   edits of the same message (target: at least 1 s), and whether the final text in
   Slack is exactly the answer; with chat.startStream and with chat.update.
2. from the event's delivery on the socket to the first text visible in the thread,
   with an instant model, at 1 and 50 concurrent threads: p50 and p99.

    python -m bench.slack_stream
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from pathlib import Path

from adapters.slack import SlackAdapter
from bench.harness import print_latency, start_app
from bot.app import App
from tests.fake_model import FakeModel, Reply
from tests.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 2_000
FIRST_TEXT = ("chat.startStream", "chat.postMessage")


async def _mention(slack: FakeSlack, channel: str, text: str) -> tuple[str, float]:
    ts, events = slack.user_message(channel, f"<@UBOT> {text}")
    delivered = time.monotonic()
    for event in events:
        await slack.push("events_api", event)
    return ts, delivered


async def streamed_answer(slack: FakeSlack, model: FakeModel, streaming: bool) -> str:
    slack.streaming_enabled = streaming
    # One token a word, in paragraphs of 100: long enough to need several messages.
    answer = "\n\n".join(
        " ".join(f"w{i}" for i in range(start, start + 100)) for start in range(0, TOKENS, 100)
    )
    model.script(f"long answer {streaming}", Reply(text=answer, chunks=TOKENS, chunk_delay=0.005))
    channel = f"CLONG{int(streaming)}"
    ts, _ = await _mention(slack, channel, f"long answer {streaming}")

    def shown() -> str | None:
        replies = slack.replies(channel, ts)
        done = replies and not any(m.streaming for m in replies)
        return "\n\n".join(m.text for m in replies) if done else None

    await slack.wait_for(lambda: shown() == answer)
    calls = [c for c in slack.calls if c.args.get("channel", c.args.get("channel_id")) == channel]
    # The message the answer streams into: its creation, then every edit of it.
    live = slack.replies(channel, ts)[0].ts
    opened = next(c.at for c in calls if c.method in FIRST_TEXT)
    edits = [opened, *(c.at for c in calls if c.args.get("ts") == live)]
    gap = min(b - a for a, b in itertools.pairwise(edits))
    exact = shown() == answer and len(slack.replies(channel, ts)) > 1
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    detail = ", ".join(f"{m} {n}" for m, n in sorted(by_method.items()))
    span = edits[-1] - edits[0]
    mode = "chat.startStream" if streaming else "chat.update"
    return (
        f"{mode:<17} {len(calls):>5} calls over {span:4.1f}s, {len(edits) - 1:>3} edits, "
        f"min {gap:4.2f}s apart, exact {exact}  ({detail})"
    )


async def first_text(slack: FakeSlack, concurrency: int, rounds: int) -> list[float]:
    latencies: list[float] = []
    for r in range(rounds):
        started = await asyncio.gather(
            *(
                _mention(slack, f"CFIRST{concurrency}x{n}", f"r{r} hello {n}")
                for n in range(concurrency)
            )
        )
        for n, (ts, delivered) in enumerate(started):
            channel = f"CFIRST{concurrency}x{n}"

            def shown(channel: str = channel, ts: str = ts) -> list[float]:
                return [
                    c.at
                    for c in slack.calls
                    if c.method in FIRST_TEXT
                    and c.args.get("channel") == channel
                    and c.args.get("thread_ts") == ts
                ]

            at = await slack.wait_for(shown)
            latencies.append(at[0] - delivered)
        for n, (ts, _) in enumerate(started):  # let each answer finish before the next round
            await slack.wait_for(
                lambda c=f"CFIRST{concurrency}x{n}", t=ts: (
                    (r := slack.replies(c, t)) and not r[-1].streaming
                )
            )
    return latencies


async def _bot(tmp: Path, model_url: str, slack: FakeSlack) -> tuple[App, SlackAdapter]:
    app = await start_app(
        tmp, model_url, slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN,
        slack_api_url=slack.api_url, max_live_sessions=200,
    )  # fmt: skip
    adapter = SlackAdapter(app.router, app.settings)
    await adapter.start()
    return app, adapter


async def main() -> None:
    slack = FakeSlack()
    await slack.start()
    with tempfile.TemporaryDirectory() as tmp:
        # 1. A paced answer: the model scripted in this process.
        model = FakeModel()
        await model.start()
        app, adapter = await _bot(Path(tmp) / "paced", model.base_url, slack)
        print(f"Slack API calls for one {TOKENS:,}-token answer streamed over ~10 s")
        for streaming in (True, False):
            print("  " + await streamed_answer(slack, model, streaming))
        slack.streaming_enabled = True
        await adapter.stop()
        await app.close()
        await model.stop()

        # 2. Latency, answered by the remote echo model.
        await print_latency(
            "event delivered -> first text visible in the thread (instant model), ms",
            lambda model_url: _bot(Path(tmp) / "latency", model_url, slack),
            lambda concurrency, rounds: first_text(slack, concurrency, rounds),
        )
    await slack.stop()


if __name__ == "__main__":
    asyncio.run(main())
