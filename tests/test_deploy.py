"""What deploy/ holds matches what the code expects."""

from __future__ import annotations

from pathlib import Path

import yaml

from adapters.slack.adapter import SLASH_COMMANDS
from adapters.slack.events import SHORTCUT_COMMANDS

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_slack_manifest_declares_what_the_adapter_listens_for() -> None:
    manifest = yaml.safe_load((DEPLOY / "slack-app-manifest.yml").read_text())
    features, settings = manifest["features"], manifest["settings"]

    assert {c["command"] for c in features["slash_commands"]} == set(SLASH_COMMANDS)
    shortcuts = {s["callback_id"] for s in features["shortcuts"] if s["type"] == "message"}
    assert shortcuts == set(SHORTCUT_COMMANDS)
    events = set(settings["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.im", "assistant_thread_started"} <= events
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "files:read", "files:write"} <= scopes
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"]
