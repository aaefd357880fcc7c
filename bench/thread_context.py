"""Slack: what reading the thread costs, in Web API calls and time to first visible text.

Runs the real Slack adapter against the fake Slack from tests/, the real Copilot CLI
against the remote echo model, side by side in one run: thread reading on (the default
budget of 20,000 characters) and off (THREADPILOT_THREAD_CONTEXT_CHARS=0, the bot of
before). For each, in fresh threads one after another:

1. the first mention in a thread of 200 messages by 20 people;
2. a follow-up mention with nothing said in between;
3. a follow-up mention after 3 side remarks (mentions are required, so they are context).

It reports the thread-reading calls (conversations.replies, users.info) per turn and the
time from the mention's delivery to the first text visible in the thread.

    python -m bench.thread_context
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from adapters.slack import SlackAdapter
from bench.harness import ms, remote_echo_model, start_app
from tests.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack

THREADS = 12
HISTORY = 200
PEOPLE = 20
READING = ("conversations.replies", "users.info")
FIRST_TEXT = ("chat.startStream", "chat.postMessage")


async def turn(slack: FakeSlack, channel: str, thread_ts: str, text: str) -> tuple[float, int]:
    """Mention the bot in the thread; (seconds to first visible text, reading calls)."""
    calls = len(slack.calls)
    _, events = slack.user_message(channel, f"<@UBOT> {text}", user="U1", thread_ts=thread_ts)
    delivered = time.monotonic()
    for event in events:
        await slack.push("events_api", event)

    def first_text() -> list[float]:
        return [
            c.at
            for c in slack.calls[calls:]
            if c.method in FIRST_TEXT
            and c.args.get("channel") == channel
            and c.args.get("thread_ts") == thread_ts
        ]

    shown = (await slack.wait_for(first_text))[0]
    await slack.wait_for(
        lambda: any(m.text == f"echo: {text}" for m in slack.replies(channel, thread_ts))
    )
    reads = sum(1 for c in slack.calls[calls:] if c.method in READING)
    return shown - delivered, reads


async def scenario(
    slack: FakeSlack, budget: int, model_url: str, tmp: Path
) -> dict[str, list[tuple[float, int]]]:
    app = await start_app(
        tmp, model_url, slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN,
        slack_api_url=slack.api_url, slack_require_mention=True, thread_context_chars=budget,
    )  # fmt: skip
    adapter = SlackAdapter(app.router, app.settings)
    await adapter.start()
    results: dict[str, list[tuple[float, int]]] = {"first": [], "quiet": [], "remarks": []}
    try:
        for n in range(THREADS):
            channel = f"CBENCH{budget}x{n}"
            root, _ = slack.user_message(channel, "a long discussion starts", user="U2")
            for i in range(HISTORY - 1):
                text = f"message {i}: " + "words " * 12
                slack.user_message(channel, text, user=f"UP{i % PEOPLE}", thread_ts=root)
            results["first"].append(await turn(slack, channel, root, f"first {n}"))
            results["quiet"].append(await turn(slack, channel, root, f"quiet {n}"))
            for i in range(3):
                _, events = slack.user_message(channel, f"remark {i}", user="U3", thread_ts=root)
                await slack.push("events_api", events[0])
            results["remarks"].append(await turn(slack, channel, root, f"after remarks {n}"))
    finally:
        await adapter.stop()
        await app.close()
    return results


async def main() -> None:
    slack = FakeSlack()
    await slack.start()
    with tempfile.TemporaryDirectory() as tmp:
        async with remote_echo_model() as model_url:
            off = await scenario(slack, 0, model_url, Path(tmp) / "off")
            on = await scenario(slack, 20_000, model_url, Path(tmp) / "on")
    await slack.stop()
    print(
        f"Reading the thread on Slack: {THREADS} threads of {HISTORY} messages by {PEOPLE} "
        "people, one turn at a time; first visible text in ms"
    )
    print(f"{'turn':<34} {'reading':>8} {'calls/turn':>10} {'p50':>8} {'p90':>8} {'p50 added':>10}")
    labels = {
        "first": "first mention in the thread",
        "quiet": "follow-up, nothing said since",
        "remarks": "follow-up after 3 side remarks",
    }
    for kind, label in labels.items():
        base = statistics.median(seconds for seconds, _ in off[kind])
        for mode, results in (("off", off), ("on", on)):
            seconds = [s for s, _ in results[kind]]
            calls = statistics.mean(c for _, c in results[kind])
            added = (statistics.median(seconds) - base) * 1000
            print(
                f"{label:<34} {mode:>8} {calls:>10.2f} {ms(seconds, 0.5)} {ms(seconds, 0.9)} "
                f"{added:>+10.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
