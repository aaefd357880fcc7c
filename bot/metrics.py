"""Metrics: Prometheus counters for /metrics, and the recent errors `status` lists.

Each App has its own registry, so several can live in one process (tests, benchmarks).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.clock import Clock, system_clock
from bot.runtime import RuntimeLoad


@dataclass(frozen=True, slots=True)
class RecentError:
    at: float
    where: str
    message: str


class Metrics:
    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        self.turns = Counter(
            "threadpilot_turns",
            "Turns by outcome (done, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "threadpilot_turn_seconds",
            "Wall time of a turn, from its start to its last reply.",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.live_sessions = Gauge(
            "threadpilot_live_sessions",
            "Sessions held in the runtime's memory.",
            registry=self.registry,
        )
        self.resets = Counter(
            "threadpilot_resets",
            "Sessions retired, by cause (reset, idle, context).",
            ["cause"],
            registry=self.registry,
        )
        self.profile_turns = Counter(
            "threadpilot_profile_turns",
            "Turns answered, by the profile of their thread",
            ["profile"],
            registry=self.registry,
        )
        self.profile_tokens = Counter(
            "threadpilot_profile_tokens",
            "Model tokens (prompt and answer) used by turns, by the profile of their thread",
            ["profile"],
            registry=self.registry,
        )
        self.compactions = Counter(
            "threadpilot_compactions",
            "Context compactions the runtime ran on its own.",
            registry=self.registry,
        )
        self.errors = Counter(
            "threadpilot_errors",
            "Errors by where they happened.",
            ["where"],
            registry=self.registry,
        )
        self.recent_errors: deque[RecentError] = deque(maxlen=20)

    def watch_runtimes(self, loads: Callable[[], Sequence[RuntimeLoad]]) -> None:
        """Export each runtime's load, as `loads` reports it at scrape time."""
        self.registry.register(_RuntimeCollector(loads))

    def error(self, where: str, message: str) -> None:
        """Count an error and keep it for `status`."""
        self.errors.labels(where).inc()
        self.recent_errors.append(RecentError(self._clock(), where, message[:300]))

    def compactions_total(self) -> int:
        return int(self.registry.get_sample_value("threadpilot_compactions_total") or 0)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class _RuntimeCollector(Collector):
    """Per-runtime gauges: runtimes come and go (tenants' idle ones stop), so they are
    read at each scrape rather than kept as labelled children."""

    def __init__(self, loads: Callable[[], Sequence[RuntimeLoad]]) -> None:
        self._loads = loads

    def collect(self) -> Iterator[Metric]:
        loads = self._loads()
        gauges = {
            "up": ("threadpilot_runtime_up", "Whether the runtime's CLI is running."),
            "pid": ("threadpilot_runtime_pid", "Process id of its CLI."),
            "rss_bytes": ("threadpilot_runtime_rss_bytes", "Resident memory of its CLI."),
            "live_sessions": ("threadpilot_runtime_live_sessions", "Sessions it holds live."),
            "turns": ("threadpilot_runtime_turns", "Turns under way on it."),
        }
        for field, (name, documentation) in gauges.items():
            family = GaugeMetricFamily(name, documentation, labels=["runtime"])
            for load in loads:
                value = getattr(load, field)
                if value is not None:
                    family.add_metric([load.name], float(value))
            yield family
        restarts = CounterMetricFamily(
            "threadpilot_runtime_restarts", "Restarts after its CLI died.", labels=["runtime"]
        )
        for load in loads:
            restarts.add_metric([load.name], load.restarts)
        yield restarts
