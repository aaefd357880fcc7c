"""Logs: one line per event, as text or JSON, tagged with the thread and turn they belong
to, and with every secret of the configuration blotted out whatever logged it."""

from __future__ import annotations

import contextvars
import json
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from bot.config import Settings

REDACTED = "[redacted]"
# What else, besides \n, ends a line for some reader (str.splitlines, terminals, log
# shippers). Written escaped, so that text from outside cannot start a line that passes
# for a record of its own.
_TEXT_ESCAPES = str.maketrans({c: repr(c)[1:-1] for c in "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})
# json.dumps escapes the control characters below U+0020, but not these.
_JSON_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"})
_context: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "log_context", default=None
)


@contextmanager
def turn_context(thread: str, turn: str) -> Iterator[None]:
    """Every line logged inside (in this task) carries `thread` and `turn`."""
    token = _context.set((thread, turn))
    try:
        yield
    finally:
        _context.reset(token)


def secrets_of(settings: Settings) -> list[str]:
    values = (
        settings.slack_bot_token,
        settings.slack_app_token,
        settings.slack_signing_secret,
        settings.discord_token,
        settings.provider_api_key,
        settings.github_token,
    )
    return [value.get_secret_value() for value in values if value and value.get_secret_value()]


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool, secrets: Iterable[str]) -> None:
        super().__init__()
        self._json = as_json
        # Longest first, so a secret containing another is blotted out whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        context = _context.get()
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        at += f".{int(record.msecs):03d}Z"
        if self._json:
            line: dict[str, str] = {
                "time": at,
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }
            if context:
                line["thread"], line["turn"] = context
            return self._redact(json.dumps(line, ensure_ascii=False).translate(_JSON_ESCAPES))
        where = f" [{context[0]} {context[1]}]" if context else ""
        text = f"{at} {record.levelname} {record.name}{where}: {message}"
        # One event, one line: multi-line messages (tracebacks) keep their lines joined.
        return self._redact(text.translate(_TEXT_ESCAPES).replace("\n", "\n    "))


class Tally:
    """Trouble anyone can cause at will (malformed requests, forged deliveries, a full file
    table), logged as one WARNING line per `interval_s` with a count: a flood of it must
    not become a flood of log lines (or tracebacks)."""

    def __init__(self, log: logging.Logger, what: str, interval_s: float = 60.0) -> None:
        self._log = log
        self._what = what
        self._interval_s = interval_s
        self._count = 0
        self._quiet_until = -math.inf  # time.monotonic()

    def add(self, latest: str) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._quiet_until:
            self._log.warning(
                "%s: %d since the last such line (the latest: %s)", self._what, self._count, latest
            )
            self._count = 0
            self._quiet_until = now + self._interval_s


def setup(settings: Settings, level: int | None = None) -> None:
    """Log to stderr as configured; `level` overrides THREADPILOT_LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(settings.log_json, secrets_of(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level is not None else settings.log_level)
    # A line per scheduled run (the heartbeat's every few seconds) says nothing; the
    # scheduler (bot/scheduler.py) records each job's last result for `status`.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
