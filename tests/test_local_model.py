"""The zero-credential first run: `threadpilot` on a machine with no tokens or keys at all
answers in the console, through the real Copilot CLI, with the embedded local model (or
the GGUF file THREADPILOT_LOCAL_MODEL_FILE names)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import local_model
from bot.config import Settings
from bot.doctor import check_local_model
from bot.errors import LocalModelUnavailable
from bot.local_model import LocalModel, find_model_file, model_file
from tests.conftest import reap, run_threadpilot
from tests.test_console import Console

pytest.importorskip("xllamacpp", reason="the `local` extra is not installed")

MODEL = "smollm2-135m-instruct"
# What the Copilot CLI puts before every user message.
DATE = "<current_datetime>2026-11-27T20:38:34.333+00:00</current_datetime>\n\n"


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
    # What the CLI's date block before every question used to spoil ("Le Grand Paris").
    assert answer == "The capital of France is Paris."
    # The very answer the embedded model gave, as the runtime recorded it.
    [message] = assistant_messages(data_dir)
    assert message["model"] == MODEL
    assert str(message["content"]).strip() == answer
    with sqlite3.connect(data_dir / "threadpilot.db") as db:
        assert db.execute("SELECT kind, state FROM turns").fetchall() == [("turn", "done")]


async def test_a_gguf_file_of_ones_own_is_served_under_its_name(
    tmp_path: Path, cli_path: Path
) -> None:
    bundled = find_model_file()
    assert bundled is not None
    own = tmp_path / "models" / "my-model.gguf"
    own.parent.mkdir()
    shutil.copyfile(bundled, own)

    process = await run_threadpilot(
        tmp_path, cli_path,
        THREADPILOT_DATA_DIR=str(tmp_path / "data"), THREADPILOT_LOCAL_MODEL_FILE=str(own),
    )  # fmt: skip
    try:
        banner = await Console(process).expect("Type a message")
        served = re.search(r"model: the embedded my-model at (http://127\.0\.0\.1:\d+/v1) ", banner)
        assert served is not None, banner
        assert f"(THREADPILOT_LOCAL_MODEL_FILE={own}; no BYOK provider" in banner
        assert "tiny demo model" not in banner  # the note is about the bundled SmolLM2
        # What the running server says it serves: that file, under its name, with the
        # context SmolLM2 was trained on (the bundled copy gets half).
        async with aiohttp.ClientSession() as http, http.get(f"{served[1]}/models") as response:
            [model] = (await response.json())["data"]
        assert (model["id"], model["meta"]["n_ctx"]) == ("my-model", 8192)
    finally:
        errors = await reap(process)
    assert "Traceback" not in errors, errors


async def test_a_missing_model_file_stops_the_start_naming_the_variable(
    tmp_path: Path, cli_path: Path
) -> None:
    missing = tmp_path / "nowhere.gguf"
    process = await run_threadpilot(tmp_path, cli_path, THREADPILOT_LOCAL_MODEL_FILE=str(missing))
    async with asyncio.timeout(60):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert stderr.decode().strip() == (
        f"threadpilot: THREADPILOT_LOCAL_MODEL_FILE: cannot read {missing} as a GGUF model "
        "file (No such file or directory)"
    )


def test_a_file_that_is_not_gguf_is_refused_naming_the_variable(tmp_path: Path) -> None:
    notes = tmp_path / "notes.gguf"
    notes.write_text("not a model")
    with pytest.raises(LocalModelUnavailable) as raised:
        model_file(Settings(_env_file=None, local_model_file=notes))  # type: ignore[call-arg]
    assert str(raised.value) == (
        f"THREADPILOT_LOCAL_MODEL_FILE: cannot read {notes} as a GGUF model file "
        "(it does not start as a GGUF file does)"
    )


def test_a_file_of_ones_own_without_the_server_names_only_the_server_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_model, "_server_installed", lambda: False)
    settings = Settings(_env_file=None, local_model_file=tmp_path / "m.gguf")  # type: ignore[call-arg]
    with pytest.raises(LocalModelUnavailable) as raised:
        model_file(settings)
    assert str(raised.value) == (
        "THREADPILOT_LOCAL_MODEL_FILE needs the embedded model server: "
        "pip install 'threadpilot[local]'"
    )


class Served:
    """A started embedded model server, asked directly over HTTP."""

    def __init__(self, strip_datetime: bool) -> None:
        self.local = LocalModel(model_file(Settings(_env_file=None)), strip_datetime)  # type: ignore[call-arg]
        self.root = self.local.start().removesuffix("/v1")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.root + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt the server renders from `messages` with its chat template."""
        return str(self.post("/apply-template", {"messages": messages})["prompt"])

    def answer(self, messages: list[dict[str, str]]) -> str:
        body = {"messages": messages, "temperature": 0, "max_tokens": 24}
        return str(self.post("/v1/chat/completions", body)["choices"][0]["message"]["content"])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Served, Served]]:
    """The embedded model served as the bot serves it, and with its own template as is."""
    stripping, plain = Served(strip_datetime=True), Served(strip_datetime=False)
    yield stripping, plain
    stripping.local.stop()
    plain.local.stop()


def conversation(prefix: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"{prefix}My name is Ada. Remember it."},
        {"role": "assistant", "content": "I will remember, Ada."},
        {"role": "user", "content": f"{prefix}What is my name?"},
    ]


def test_the_model_never_sees_the_clis_date_block(servers: tuple[Served, Served]) -> None:
    stripping, plain = servers
    prompt = stripping.prompt(conversation(DATE))
    assert "current_datetime" not in prompt and "2026-11-27" not in prompt
    # Otherwise exactly what the model's own template makes of the messages.
    assert prompt == plain.prompt(conversation("")) == stripping.prompt(conversation(""))
    assert plain.prompt(conversation(DATE)) != prompt  # the block is there without the fix
    # And so the same answer as to the question asked without it.
    assert stripping.answer(conversation(DATE)) == stripping.answer(conversation(""))


def test_text_around_the_date_block_is_kept(servers: tuple[Served, Served]) -> None:
    stripping, plain = servers
    framed = [{"role": "user", "content": f"Before.\n{DATE}After."}]
    assert stripping.prompt(framed) == plain.prompt(
        [{"role": "user", "content": "Before.\n\nAfter."}]
    )


def test_doctor_says_which_file_it_serves_or_why_it_cannot(tmp_path: Path) -> None:
    bundled = find_model_file()
    assert bundled is not None
    own = tmp_path / "my-model.gguf"
    own.symlink_to(bundled)
    missing = tmp_path / "nowhere.gguf"

    found = check_local_model(Settings(_env_file=None, local_model_file=own))  # type: ignore[call-arg]
    assert found.ok
    assert found.text.startswith(f"the embedded my-model from THREADPILOT_LOCAL_MODEL_FILE {own}")
    assert "a context of 8192 tokens" in found.text  # what SmolLM2 was trained on
    lacking = check_local_model(Settings(_env_file=None, local_model_file=missing))  # type: ignore[call-arg]
    assert not lacking.ok
    assert lacking.text.startswith(f"THREADPILOT_LOCAL_MODEL_FILE: cannot read {missing}")
