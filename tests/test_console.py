"""The console adapter, run as a user runs it: `threadpilot console` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fake_model import FakeModel, user_texts


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
                assert chunk, f"console exited before printing {text!r}:\n{self.output}"
                self.output += chunk.decode()
        return self.output[start:]


async def test_console_chat_with_threads_and_commands(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "THREADPILOT_DATA_DIR": str(tmp_path / "data"),
        "THREADPILOT_MODEL": "fake-model",
        "THREADPILOT_PROVIDER_BASE_URL": fake_model.base_url,
        "THREADPILOT_PROVIDER_WIRE_API": "completions",
        "COPILOT_CLI_PATH": str(cli_path),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "console",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    console = Console(process)
    try:
        await console.expect("threadpilot console")
        await console.send("console hello")
        await console.expect("echo: console hello")

        await console.send("/thread side")
        await console.expect("now in thread 'side'")
        await console.send("console side note")
        await console.expect("echo: console side note")
        assert user_texts(fake_model.requests_with("console side note")[-1]) == [
            "console side note"
        ]

        await console.send("/thread main")
        await console.send("console again")
        await console.expect("echo: console again")
        assert user_texts(fake_model.requests_with("console again")[-1]) == [
            "console hello",
            "console again",
        ]

        await console.send("/help")
        assert "reset - " in await console.expect("help - show this help")
        await console.send("/status")
        status = await console.expect("store:")
        assert "Copilot CLI 1.0.102" in status and "console: 2 / 2 / 2" in status

        await console.send("/branch")
        branched = await console.expect("Branched this conversation into")
        assert "branched from 'main'" in branched

        await console.send("/reset")
        await console.expect("Started a fresh session")
        await console.send("console after reset")
        await console.expect("echo: console after reset")
        assert user_texts(fake_model.requests_with("console after reset")[-1]) == [
            "console after reset"
        ]

        await console.send("/quit")
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    errors = (await process.stderr.read()).decode()
    assert "Traceback" not in errors, errors
