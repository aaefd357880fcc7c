"""`threadpilot doctor` against the fakes: what works is said so, and what is missing is
named (the scope, the intent, the variable), with a failing exit code."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import DiscordFactory, start_bot
from tests.fake_discord import GATEWAY_MESSAGE_CONTENT, GUILD_ID, FakeDiscord
from tests.fake_model import FakeModel
from tests.fake_slack import FakeSlack


@pytest.fixture(autouse=True)
async def commands_registered(make_discord: DiscordFactory) -> None:
    """A bot has registered its commands in the server, as one would have."""
    await make_discord()


async def doctor(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path, **env: str
) -> tuple[int, list[str]]:
    process = await start_bot(tmp_path, fake_model, cli_path, "doctor", **env)
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert b"Traceback" not in stderr, stderr.decode()
    assert process.returncode is not None
    return process.returncode, stdout.decode().splitlines()


def platforms(fake_slack: FakeSlack, fake_discord: FakeDiscord, tmp_path: Path) -> dict[str, str]:
    return {
        **fake_slack.env,
        **fake_discord.env,
        "THREADPILOT_DATA_DIR": str(tmp_path / "data"),
        "THREADPILOT_DISCORD_MESSAGE_CONTENT": "true",
    }


async def test_doctor_names_a_missing_scope_and_a_missing_intent(
    tmp_path: Path,
    fake_model: FakeModel,
    fake_slack: FakeSlack,
    fake_discord: FakeDiscord,
    cli_path: Path,
) -> None:
    fake_slack.scopes.discard("reactions:write")
    fake_discord.application_flags = 0  # the Message Content intent is off in the portal
    try:
        code, lines = await doctor(
            tmp_path, fake_model, cli_path, **platforms(fake_slack, fake_discord, tmp_path)
        )
    finally:
        fake_slack.scopes.add("reactions:write")
        fake_discord.application_flags = GATEWAY_MESSAGE_CONTENT

    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert code == 1 and len(problems) == 2, lines
    assert problems[0].startswith(
        "PROBLEM slack: the app lacks the scope reactions:write (for the 'working on it' reaction)"
    )
    assert (
        "THREADPILOT_DISCORD_MESSAGE_CONTENT=true but the Message Content intent is off"
        in (problems[1])
    )
    assert "ok      slack: SLACK_BOT_TOKEN: threadpilot in the workspace Fake" in lines
    assert "ok      slack: SLACK_APP_TOKEN: Socket Mode connections open" in lines
    assert "ok      discord: DISCORD_TOKEN: logged in as threadpilot" in lines
    assert any(line.startswith("ok      runtime: Copilot CLI 1.0.102 starts") for line in lines)
    assert any(line.startswith("ok      model: provider at ") for line in lines)
    assert lines[-1] == "2 problems to fix."


async def test_doctor_is_all_good_when_everything_is_there_and_names_bad_tokens(
    tmp_path: Path,
    fake_model: FakeModel,
    fake_slack: FakeSlack,
    fake_discord: FakeDiscord,
    cli_path: Path,
) -> None:
    env = platforms(fake_slack, fake_discord, tmp_path)
    code, lines = await doctor(tmp_path, fake_model, cli_path, **env)
    assert (code, lines[-1]) == (0, "All good."), lines
    assert "ok      slack: every scope the bot uses is granted" in lines
    assert "ok      discord: the Message Content intent is on" in lines
    assert f"ok      discord: every command is registered in the server {GUILD_ID}" in lines

    registered = fake_discord.synced.pop(GUILD_ID)  # as before any bot ever started
    try:
        code, lines = await doctor(tmp_path, fake_model, cli_path, **env)
    finally:
        fake_discord.synced[GUILD_ID] = registered
    (missing,) = [line for line in lines if line.startswith("PROBLEM")]
    assert code == 1 and f"not registered in the server {GUILD_ID}: Branch from here" in missing

    env.update(SLACK_BOT_TOKEN="xoxb-revoked", DISCORD_TOKEN="revoked")
    code, lines = await doctor(tmp_path, fake_model, cli_path, **env)
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert code == 1 and len(problems) == 2, lines
    assert "auth.test refused SLACK_BOT_TOKEN (invalid_auth)" in problems[0]
    assert "DISCORD_TOKEN was refused" in problems[1]
