"""Log lines: one per event, text or JSON, tagged with thread and turn, secrets blotted out."""

from __future__ import annotations

import json
import logging

import pytest

from bot import logs
from bot.config import Settings

TOKEN = "xoxb-123-very-secret-token"


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    yield capsys
    logging.getLogger().handlers.clear()


def settings(**values: object) -> Settings:
    secrets = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_APP_TOKEN": "xapp-1-also-secret"}
    return Settings(_env_file=None, **secrets, **values)  # type: ignore[arg-type]


def test_text_lines_carry_thread_and_turn_and_never_a_secret(
    captured: pytest.CaptureFixture[str],
) -> None:
    logs.setup(settings())
    log = logging.getLogger("threadpilot.test")
    log.info("outside any turn")
    with logs.turn_context("slack/T1/C1/123.4", "Ev42"):
        log.warning("token is %s", TOKEN)
    lines = captured.readouterr().err.splitlines()
    assert lines[0].endswith("INFO threadpilot.test: outside any turn")
    assert lines[1].endswith(
        "WARNING threadpilot.test [slack/T1/C1/123.4 Ev42]: token is [redacted]"
    )
    assert TOKEN not in captured.readouterr().err


def test_json_lines_are_one_object_each(captured: pytest.CaptureFixture[str]) -> None:
    logs.setup(settings(THREADPILOT_LOG_JSON=True))
    log = logging.getLogger("threadpilot.test")
    with logs.turn_context("discord/1/2/3", "99"):
        try:
            raise RuntimeError(f"boom with {TOKEN}")
        except RuntimeError:
            log.exception("it failed")
    (line,) = captured.readouterr().err.splitlines()
    record = json.loads(line)
    assert (record["level"], record["thread"], record["turn"]) == ("ERROR", "discord/1/2/3", "99")
    assert record["message"].startswith("it failed\nTraceback")
    assert TOKEN not in line and "[redacted]" in line
