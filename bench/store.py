"""The store's cost per turn on SQLite and on PostgreSQL, side by side in one run.

A turn's store work as the router does it: claim the event, start it, finish it, record
the thread's use (`touch`). Measured at 1 and 50 threads at once (group commit folds
concurrent operations into one transaction on both engines), against an SQLite file and
a throwaway local PostgreSQL 15 server (tests/postgres.py; fsync off, as a tuned server
with a battery-backed disk would behave).

    python -m bench.store [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from pathlib import Path

from bench.harness import ms
from bot.journal import Journal, TurnOutcome
from bot.store import Store
from bot.thread_key import ThreadKey
from tests.postgres import new_database, postgres_server

_events = itertools.count(1)


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def turn(store: Store, journal: Journal, key: ThreadKey) -> float:
    start = time.perf_counter()
    claim = await journal.claim(f"bench:{next(_events)}", key, "turn", "msg")
    assert claim is not None and claim.thread is not None
    await journal.start(claim.turn_id)
    await journal.finish(claim.turn_id, TurnOutcome(ok=True, reply_refs=["reply"]))
    await store.touch(claim.thread.id, 100, 1000, "ref")
    return time.perf_counter() - start


async def measure(target: Path | str, turns: int) -> dict[int, list[float]]:
    store = await Store.open(target)
    journal = Journal(store)
    try:
        results: dict[int, list[float]] = {}
        for concurrency in (1, 50):
            keys = [ThreadKey("slack", "TB", "CB", str(n)) for n in range(concurrency)]
            latencies: list[float] = []
            for _ in range(max(1, turns // concurrency)):
                latencies += await asyncio.gather(*(turn(store, journal, k) for k in keys))
            results[concurrency] = latencies
        return results
    finally:
        await store.close()


async def main(turns: int) -> None:
    with postgres_server() as server, tempfile.TemporaryDirectory() as tmp:
        engines = {
            "sqlite": await measure(Path(tmp) / "bench.db", turns),
            "postgresql": await measure(new_database(server), turns),
        }
    print(f"store work per turn, ms (claim, start, finish, touch; {turns} turns per level)")
    print(f"{'engine':>10} {'threads':>8} {'p50':>8} {'p99':>8} {'x sqlite p50':>13}")
    for concurrency in (1, 50):
        base = median(engines["sqlite"][concurrency])
        for name, results in engines.items():
            latencies = results[concurrency]
            print(
                f"{name:>10} {concurrency:>8} {ms(latencies, 0.5)} {ms(latencies, 0.99)} "
                f"{median(latencies) / base:>13.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the store's cost per turn, by engine")
    parser.add_argument("--turns", type=int, default=1000)
    asyncio.run(main(parser.parse_args().turns))
