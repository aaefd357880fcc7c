"""The layering holds: the core imports no chat platform library, and adapters import
neither the Copilot SDK nor the store: they program against bot/inbound.py and
bot/replies.py. Checked in fresh interpreters, so nothing imported earlier hides a
violation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_LIBRARIES = ("slack_bolt", "slack_sdk", "discord")
CORE_ONLY = ("copilot", "bot.store", "bot.router", "bot.runtime", "bot.sessions")


def imported_by(*modules: str) -> set[str]:
    """The top-level and `bot.` modules importing `modules` loads."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    return {name for name in loaded if not name.startswith("_")}


@pytest.mark.parametrize(
    "adapter",
    [
        ("adapters.slack", "adapters.slack.doctor"),
        ("adapters.discord", "adapters.discord.doctor"),
        ("adapters.console",),
    ],
)
def test_adapters_import_neither_the_runtime_nor_the_store(adapter: tuple[str, ...]) -> None:
    loaded = imported_by(*adapter)
    assert not {m for m in loaded if m.split(".")[0] in CORE_ONLY or m in CORE_ONLY}


def test_the_core_imports_no_platform_library() -> None:
    core = [f"bot.{path.stem}" for path in (ROOT / "bot").glob("*.py") if path.stem != "__main__"]
    loaded = imported_by(*core)
    assert not {m for m in loaded if m.split(".")[0] in PLATFORM_LIBRARIES}
