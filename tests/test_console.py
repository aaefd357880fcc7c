"""The console adapter, run as a user runs it: `threadpilot console` in a subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.conftest import reap, start_bot
from tests.fake_model import FakeModel, start_context, user_texts


class Console:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def expect(self, text: str) -> str:
        """Read output until `text` appears; return what was read up to and including it."""
        assert self.process.stdout is not None
        start = len(self.output)
        async with asyncio.timeout(60):
            while text not in self.output[start:]:
                chunk = await self.process.stdout.read(4096)
                if not chunk:
                    assert self.process.stderr is not None
                    errors = (await self.process.stderr.read()).decode(errors="replace")
                    raise AssertionError(
                        f"console exited before printing {text!r}:\n{self.output}\n{errors}"
                    )
                self.output += chunk.decode()
        return self.output[start:]

    async def ask(self, line: str, answer: str) -> str:
        await self.send(line)
        return await self.expect(answer)


@asynccontextmanager
async def console(tmp_path: Path, fake_model: FakeModel, cli_path: Path) -> AsyncIterator[Console]:
    # A small window, so one long message fills it past the reset ratio (0.75).
    process = await start_bot(
        tmp_path, fake_model, cli_path, "console",
        THREADPILOT_DATA_DIR=str(tmp_path / "data"), THREADPILOT_PROVIDER_MAX_PROMPT_TOKENS="1000",
    )  # fmt: skip
    try:
        yield Console(process)
        await Console(process).send("/quit")
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        errors = await reap(process)
    assert "Traceback" not in errors, errors


async def test_console_chat_in_threads_with_help_and_status(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    async with console(tmp_path, fake_model, cli_path) as term:
        await term.expect("threadpilot console")
        await term.ask("console hello", "echo: console hello")

        await term.ask("/thread side", "now in thread 'side'")
        await term.ask("console side note", "echo: console side note")
        assert user_texts(fake_model.requests_with("console side note")[-1]) == [
            "console side note"
        ]

        await term.send("/thread main")
        await term.ask("console again", "echo: console again")
        assert user_texts(fake_model.requests_with("console again")[-1]) == [
            "console hello",
            "console again",
        ]

        gate = fake_model.hold("console slow")  # the model takes its time
        await term.send("console slow")
        await term.expect("~ waiting for the model...")
        gate.set()
        await term.expect("echo: console slow")

        assert "restore - " in await term.ask("/help", "help - what I do, and my commands")
        status = await term.ask("/status", "store:")
        assert "Copilot CLI 1.0.102" in status and "console: 2 / 2 / 2" in status
        assert "turns: 0 running, 0 queued" in status  # not counting itself
        assert "idle sweep: next" in status


async def test_console_reset_restore_branch_and_summary_reset_note(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    async with console(tmp_path, fake_model, cli_path) as term:
        await term.ask("remember the number 42", "echo: remember the number 42")
        await term.ask("/reset", "Started afresh")
        await term.ask("console after reset", "echo: console after reset")
        assert user_texts(fake_model.requests_with("console after reset")[-1]) == [
            "console after reset"
        ]
        await term.ask("/restore", "Restored")
        await term.ask("console after restore", "echo: console after restore")
        assert user_texts(fake_model.requests_with("console after restore")[-1]) == [
            "remember the number 42",
            "console after restore",
        ]
        branched = await term.ask("/branch", "Branched into")
        assert "branched from 'main'" in branched

        # A message that fills the context window past the ratio: summarize+reset.
        await term.send("/thread long")
        await term.send("long " * 720)  # ~780 of the 1000 tokens
        await term.expect("~ I summarized our conversation")
        await term.ask("after the summary reset", "echo: after the summary reset")
        request = fake_model.requests_with("after the summary reset")[-1]
        assert user_texts(request) == ["after the summary reset"]
        assert "This conversation continues an earlier one" in start_context(request)
