"""The cost of running the agent's shell commands in the sandbox: the same commands run
by bash directly and in bubblewrap (bot/sandbox.py), interleaved, side by side.

    python -m bench.sandbox
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.harness import ms
from bot.sandbox import PATH, Sandbox

COMMANDS = {
    "true": "true",
    "ls and grep": "ls -la; grep -r needle . || true",
    "python3 -c pass": "python3 -c pass",
}
ROUNDS = 40


async def _direct(command: str, workspace: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        "/bin/bash",
        "-c",
        command,
        cwd=workspace,
        stdout=asyncio.subprocess.DEVNULL,
        env={"PATH": PATH},  # the programs the sandbox finds
    )
    await process.wait()


async def main() -> None:
    sandbox = await Sandbox.find()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        for n in range(20):
            (workspace / f"file{n}.txt").write_text("hay\n" * 100)
        print(f"{'command':<18} {'direct p50':>11} {'sandboxed p50':>14} {'p95':>8} {'extra':>8}")
        for name, command in COMMANDS.items():
            direct: list[float] = []
            sandboxed: list[float] = []
            for _ in range(ROUNDS):  # alternate, so that noise falls on both alike
                started = time.perf_counter()
                await _direct(command, workspace)
                direct.append(time.perf_counter() - started)
                started = time.perf_counter()
                await sandbox.run(command, workspace, timeout_s=30)
                sandboxed.append(time.perf_counter() - started)
            extra = sorted(sandboxed)[ROUNDS // 2] - sorted(direct)[ROUNDS // 2]
            print(
                f"{name:<18} {ms(direct, 0.5):>11} {ms(sandboxed, 0.5):>14} "
                f"{ms(sandboxed, 0.95):>8} {extra * 1000:>6.1f}ms"
            )


if __name__ == "__main__":
    asyncio.run(main())
