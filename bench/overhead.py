"""How much threadpilot itself adds to a turn, and the runtime's memory per live session.

Runs the real Copilot CLI against the instant fake model from tests/ (in its own process,
as a remote provider would be) and drives turns through the real router into a null sink
at 1, 10 and 100 concurrent threads, each thread's session already live. Per turn:

- ours CPU: CPU time spent running threadpilot's code for the turn: every step of the
  turn's task on the event loop (router, lanes, journal, event translation, the sink),
  plus the database thread's time for the turn's store operations. Excludes the SDK's
  event decoding, the CLI and the model.
- ours wall: the turn's wall time minus the time spent waiting on the runtime (session
  create/resume, the send RPC, waiting for its next event). Includes waiting for the
  database thread and for the event loop, so on a busy 2-core machine it also measures
  how long other work (the CLI, the SDK, other turns) keeps our code from running.
- turn: the whole turn as a person would wait for it.

    python -m bench.overhead [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import ms, remote_echo_model, start_app
from bot import runtime as runtime_module
from bot import store as store_module
from bot import turns as turns_module
from bot.app import App
from bot.inbound import Inbound
from bot.replies import OpenedThread, ReplyEvent
from bot.store import Store
from bot.thread_key import ThreadKey

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Timing:
    runtime_wait_s: float = 0.0
    cpu_s: float = 0.0


_current: contextvars.ContextVar[Timing | None] = contextvars.ContextVar("timing", default=None)


def _count_as_runtime(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await func(*args, **kwargs)
        finally:
            timing = _current.get()
            if timing is not None:
                timing.runtime_wait_s += time.perf_counter() - start

    return wrapper


class _RuntimeEventQueue(asyncio.Queue[Any]):
    get = _count_as_runtime(asyncio.Queue.get)  # type: ignore[assignment]


def instrument() -> None:
    """Count awaits on the runtime as the runtime's time, and database-thread CPU as ours."""
    runtime_cls = runtime_module.CopilotRuntime
    runtime_cls.create = _count_as_runtime(runtime_cls.create)  # type: ignore[method-assign]
    runtime_cls.resume = _count_as_runtime(runtime_cls.resume)  # type: ignore[method-assign]
    turn_cls = turns_module.Turn
    turn_cls.send = _count_as_runtime(turn_cls.send)  # type: ignore[method-assign]
    original_init = turn_cls.__init__

    def init(self: turns_module.Turn, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._queue = _RuntimeEventQueue()

    turn_cls.__init__ = init  # type: ignore[method-assign]

    original_run = store_module.Store.run

    async def run(self: Store, work: Callable[[sqlite3.Connection], Any]) -> Any:
        timing = _current.get()

        def timed(conn: sqlite3.Connection) -> Any:  # runs in the database thread
            start = time.thread_time()
            try:
                return work(conn)
            finally:
                if timing is not None:
                    timing.cpu_s += time.thread_time() - start

        return await original_run(self, timed)

    store_module.Store.run = run  # type: ignore[method-assign]


class _Metered:
    """Drives a coroutine step by step, adding each step's thread CPU time to `timing`."""

    def __init__(self, coro: Coroutine[Any, Any, Any], timing: Timing) -> None:
        self._coro = coro
        self._timing = timing

    def __await__(self) -> Generator[Any, Any, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            start = time.thread_time()
            try:
                yielded = self._coro.throw(error) if error else self._coro.send(value)
            except StopIteration as done:
                return done.value
            finally:
                self._timing.cpu_s += time.thread_time() - start
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # delivered into the coroutine on the next step
                value, error = None, exc


class NullSink:
    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        async for _ in events:
            pass
        return ["ref"]

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        raise NotImplementedError


async def _turn(app: App, key: ThreadKey, text: str) -> tuple[float, float, float]:
    """(turn wall, ours wall, ours CPU) in seconds."""
    timing = Timing()
    _current.set(timing)
    event_id = f"{key.thread}-{text}-{time.monotonic_ns()}"
    inbound = Inbound(event_id=event_id, key=key, user_id="U", text=text)
    start = time.perf_counter()
    await _Metered(app.router.dispatch(inbound, NullSink()), timing)
    total = time.perf_counter() - start
    return total, total - timing.runtime_wait_s, timing.cpu_s


async def main(rounds: int) -> None:
    instrument()
    async with remote_echo_model() as model_url:
        with tempfile.TemporaryDirectory() as tmp:
            app = await start_app(Path(tmp), model_url, max_live_sessions=1000)
            try:
                await _measure(app, rounds)
            finally:
                await app.close()


async def _measure(app: App, rounds: int) -> None:
    print("threadpilot overhead per turn, ms (instant fake model, real Copilot CLI)")
    print(f"{'threads':>7} {'turns':>5} | {'ours CPU':^17} | {'ours wall':^17} | {'turn':^17}")
    print(f"{'':>13} | {'p50':>8}{'p99':>9} | {'p50':>8}{'p99':>9} | {'p50':>8}{'p99':>9}")
    rss: dict[int, int] = {}
    for concurrency in (1, 10, 100):
        # The same threads at every level, so exactly `concurrency` are live.
        keys = [ThreadKey("slack", "TB", "CB", str(n)) for n in range(concurrency)]
        # Warm-up: creates the new threads' sessions (not measured).
        await asyncio.gather(*(_turn(app, key, "warm-up") for key in keys))
        rss[app.sessions.live_count] = app.runtimes.loads()[0].rss_bytes or 0
        results: list[tuple[float, float, float]] = []
        for r in range(rounds):
            results += await asyncio.gather(*(_turn(app, k, f"m{r}") for k in keys))
        walls, ours, cpu = ([row[i] for row in results] for i in range(3))
        print(
            f"{concurrency:>7} {len(results):>5} | {ms(cpu, 0.5, 2)} {ms(cpu, 0.99, 2)} | "
            f"{ms(ours, 0.5, 2)} {ms(ours, 0.99, 2)} | {ms(walls, 0.5, 2)} {ms(walls, 0.99, 2)}"
        )
    print()
    print("Copilot CLI resident memory by live sessions")
    print(f"{'live':>7} {'RSS MiB':>9}")
    for live, size in sorted(rss.items()):
        print(f"{live:>7} {size / 2**20:>9.0f}")
    lo, hi = min(rss), max(rss)
    print(f"~{(rss[hi] - rss[lo]) / (hi - lo) / 2**20:.1f} MiB per additional live session")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="threadpilot's overhead per turn")
    parser.add_argument("--rounds", type=int, default=20, help="turns per thread per level")
    asyncio.run(main(parser.parse_args().rounds))
