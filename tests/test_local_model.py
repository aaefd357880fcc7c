"""The zero-credential first run: `threadpilot` on a machine with no tokens or keys at all
answers in the console, through the real Copilot CLI, with the embedded local model."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import reap, run_threadpilot
from tests.test_console import Console

pytest.importorskip("xllamacpp", reason="the `local` extra is not installed")

MODEL = "smollm2-135m-instruct"


def assistant_messages(data_dir: Path) -> list[dict[str, object]]:
    """What the runtime recorded the model answering, from its session state."""
    messages = []
    for events in sorted((data_dir / "copilot" / "session-state").glob("*/events.jsonl")):
        for line in events.read_text().splitlines():
            event = json.loads(line)
            if event["type"] == "assistant.message":
                messages.append(event["data"])
    return messages


async def test_first_run_without_credentials_answers_with_the_embedded_model(
    tmp_path: Path, cli_path: Path
) -> None:
    data_dir = tmp_path / "data"
    # `make run`'s command, with nothing but a PATH, a home and where to keep its data: no
    # Slack, Discord, GitHub or provider credentials, and no .env (cwd is empty).
    process = await run_threadpilot(tmp_path, cli_path, THREADPILOT_DATA_DIR=str(data_dir))
    try:
        term = Console(process)
        banner = await term.expect("Type a message")
        assert (
            "threadpilot: console (no SLACK_BOT_TOKEN or DISCORD_TOKEN); "
            f"model: the embedded {MODEL} at http://127.0.0.1:"
        ) in banner
        assert "tiny demo model" in banner

        await term.send("What is the capital of France?")
        await term.send("/quit")  # read once the answer has been shown
        assert process.stdout is not None
        async with asyncio.timeout(60):
            term.output += (await process.stdout.read()).decode()
            assert await process.wait() == 0
    finally:
        errors = await reap(process)
    assert "Traceback" not in errors, errors

    shown = term.output.split("/quit to leave.\n", 1)[1]
    answer = shown.replace("~ waiting for the model...\n", "").strip()  # if it took a moment
    assert answer and not answer.startswith("!"), term.output
    # The very answer the embedded model gave, as the runtime recorded it.
    [message] = assistant_messages(data_dir)
    assert message["model"] == MODEL
    assert str(message["content"]).strip() == answer
    with sqlite3.connect(data_dir / "threadpilot.db") as db:
        assert db.execute("SELECT kind, state FROM turns").fetchall() == [("turn", "done")]
