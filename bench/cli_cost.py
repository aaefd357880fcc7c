"""What the Copilot CLI itself costs before a new session's first request reaches the model.

No threadpilot around it: runtimes (bot/runtime.py, real CLI processes) and the fake model
in this process. N sessions' first messages go out at once, their sessions
- created then sent (what a new thread does),
- created beforehand, only sent (what a pool of spare sessions would leave),
- used once already, sent again (a warm session: the least the CLI can cost),
on one runtime and on two (sessions alternate). From the sends to the model having every
request; and the CLI processes' CPU time per session meanwhile (until the answers end).
10 runs each, p50 and worst. The floor under bench/new_threads.py.

    python -m bench.cli_cost [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from copilot import CopilotSession

from bench.harness import ROOT, ms
from bot import compat
from bot.copilot_cli import find_cli
from bot.profiles import Profiles
from bot.runtime import CopilotRuntime, SessionSpec
from bot.thread_key import ThreadKey
from bot.turns import Turn
from tests.conftest import make_settings
from tests.fake_model import FakeModel, last_user_text

MODES = ("create + send", "created, send", "warm, send")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(runtime: CopilotRuntime) -> float:
    """User + system CPU seconds of the runtime's CLI process so far."""
    process = compat.cli_process(runtime.client)
    assert process is not None
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Bench:
    def __init__(self, model: FakeModel, runtimes: list[CopilotRuntime], tmp: Path) -> None:
        settings = make_settings(tmp, model.base_url)
        self._model = model
        self._runtimes = runtimes
        self._profile = Profiles(settings).resolve(ThreadKey("slack", "T", "C", "1"))
        self._workspace = tmp / "workspace"
        self._workspace.mkdir()

    def _spec(self) -> SessionSpec:
        return SessionSpec(f"bench-{uuid.uuid4().hex[:12]}", self._workspace, self._profile)

    async def _turns(
        self, used: list[CopilotRuntime], made: list[CopilotSession | None], tags: list[str]
    ) -> tuple[float, list[CopilotSession]]:
        """One turn per tag, all at once, on `made` (None: a session created first); when
        every answer has ended, the seconds until the model had every request, and the
        sessions."""
        arrived: dict[str, float] = {}

        def note(body: dict[str, Any]) -> None:
            text = last_user_text(body)
            for tag in tags:
                if tag in text:
                    arrived.setdefault(tag, time.monotonic())

        async def turn(
            runtime: CopilotRuntime, session: CopilotSession | None, tag: str
        ) -> CopilotSession:
            session = session or await runtime.create(self._spec())
            turn = Turn(session, f"hello {tag}", (), 60, runtime)
            await turn.send()
            async for _ in turn.events():  # to its end: the next burst starts on idle CLIs
                pass
            return session

        self._model.observers.append(note)
        began = time.monotonic()
        try:
            sessions = await asyncio.gather(*map(turn, used, made, tags))
        finally:
            self._model.observers.remove(note)
        return max(arrived.values()) - began, sessions

    async def burst(self, sessions: int, runtimes: int, mode: str) -> tuple[float, float]:
        """Seconds to every request, and CLI CPU seconds per session (to the answers' end)."""
        used = [self._runtimes[n % runtimes] for n in range(sessions)]
        made: list[CopilotSession | None] = [None] * sessions
        if mode != MODES[0]:
            made = list(await asyncio.gather(*(rt.create(self._spec()) for rt in used)))
        if mode == MODES[2]:
            await self._turns(used, made, [uuid.uuid4().hex for _ in used])
        cpu = sum(map(cpu_s, self._runtimes))
        seconds, live = await self._turns(used, made, [uuid.uuid4().hex for _ in used])
        spent = (sum(map(cpu_s, self._runtimes)) - cpu) / sessions
        await asyncio.gather(*map(CopilotRuntime.disconnect, used, live))
        return seconds, spent


async def main(runs: int) -> None:
    model = FakeModel()
    await model.start()
    cli = find_cli(ROOT / ".copilot-cli")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        settings = make_settings(root, model.base_url)
        runtimes = [
            CopilotRuntime(settings, cli, name=str(n), root=root / f"runtime{n}") for n in (0, 1)
        ]
        try:
            await asyncio.gather(*(runtime.start() for runtime in runtimes))
            bench = Bench(model, runtimes, root)
            cases = [(1, 1), (10, 1), (10, 2)]
            for sessions, count in cases:  # first-use costs paid on every runtime
                await bench.burst(sessions, count, MODES[0])
            results: dict[tuple[int, int, str], list[tuple[float, float]]] = {}
            for _ in range(runs):
                for sessions, count in cases:
                    for mode in MODES:
                        result = await bench.burst(sessions, count, mode)
                        results.setdefault((sessions, count, mode), []).append(result)
        finally:
            for runtime in runtimes:
                await runtime.stop()
            await model.stop()
    print(f"the CLI alone: sends at once -> the model has every request; {runs} runs each")
    print(f"{'sessions':>8} {'runtimes':>8} {'how':>15} {'p50 ms':>8} {'worst':>8} "
          f"{'CLI CPU ms/session':>19}")  # fmt: skip
    for (sessions, count, mode), values in results.items():
        seconds = [s for s, _ in values]
        cpu = [c for _, c in values]
        print(f"{sessions:>8} {count:>8} {mode:>15} {ms(seconds, 0.5)} {ms(seconds, 1.0)} "
              f"{ms(cpu, 0.5):>19}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the Copilot CLI's cost per new session")
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
