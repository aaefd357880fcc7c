"""Secrets never reach a log: the bot runs Slack and Discord at DEBUG with every secret set,
through answers, a file, a model failure and a shutdown; no captured line holds one."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.conftest import start_bot, stop_bot
from tests.fake_discord import BOT_ID, TEXT_CHANNEL, FakeDiscord
from tests.fake_discord import TOKEN as DISCORD_TOKEN
from tests.fake_model import FakeModel, Reply
from tests.fake_slack import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, FakeSlack

PROVIDER_KEY = "sk-threadpilot-provider-key-0451"
GITHUB_TOKEN = "ghp_threadpilotGitHubToken0451"


async def test_no_secret_appears_in_any_log_line(
    tmp_path: Path,
    fake_model: FakeModel,
    fake_slack: FakeSlack,
    fake_discord: FakeDiscord,
    cli_path: Path,
) -> None:
    secrets = [BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, DISCORD_TOKEN, PROVIDER_KEY, GITHUB_TOKEN]
    fake_model.script("secrets: fail", Reply(status=500), times=None)
    connections, identified = fake_slack.connections, len(fake_discord.identified)
    process = await start_bot(
        tmp_path, fake_model, cli_path,
        THREADPILOT_DATA_DIR=str(tmp_path / "data"),
        THREADPILOT_LOG_LEVEL="DEBUG",
        THREADPILOT_PROVIDER_API_KEY=PROVIDER_KEY,
        COPILOT_GITHUB_TOKEN=GITHUB_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        **fake_slack.env,
        **fake_discord.env,
    )  # fmt: skip
    try:
        await fake_slack.wait_for(lambda: fake_slack.connections > connections)
        await fake_discord.wait_for(lambda: len(fake_discord.identified) > identified)
        channel = f"C{uuid.uuid4().hex[:8].upper()}"
        notes = fake_slack.add_file("notes.txt", "text/plain", b"the file's words")
        hello_ts, hello = fake_slack.user_message(channel, "<@UBOT> secrets: hello")
        file_ts, with_file = fake_slack.user_message(
            channel, "<@UBOT> secrets: read this", files=[notes]
        )
        failing_ts, failing = fake_slack.user_message(channel, "<@UBOT> secrets: fail")
        for event in [*hello, *with_file, *failing]:
            await fake_slack.push("events_api", event)
        for ts, answer in [(hello_ts, "secrets: hello"), (file_ts, "secrets: read this")]:
            await fake_slack.wait_for(
                lambda ts=ts, answer=answer: (
                    [m.text for m in fake_slack.replies(channel, ts)] == [f"echo: {answer}"]
                )
            )
        await fake_slack.wait_for(lambda: fake_slack.replies(channel, failing_ts))
        message = await fake_discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> secrets: from discord")
        await fake_discord.wait_for(
            lambda: (
                [m.content for m in fake_discord.by_bot(message.id)]
                == ["echo: secrets: from discord"]
            )
        )
    finally:
        stderr = await stop_bot(process)
    assert process.stdout is not None
    captured = {"stderr": stderr, "stdout": (await process.stdout.read()).decode()}
    for path in (tmp_path / "data").rglob("*.log"):  # the runtime's own logs
        captured[str(path)] = path.read_text(errors="replace")
    assert len(stderr.splitlines()) > 100  # DEBUG: the client libraries had their say
    leaks = [
        (where, secret) for where, text in captured.items() for secret in secrets if secret in text
    ]
    assert leaks == []
