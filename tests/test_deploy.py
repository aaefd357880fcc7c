"""What deploy/ holds matches what the code expects."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adapters.discord.doctor import invite_url
from adapters.slack.doctor import REQUIRED_SCOPES
from adapters.slack.events import SLASH_COMMANDS
from bot.commands import COMMANDS
from bot.config import Settings
from bot.copilot_cli import VERSION as CLI_VERSION

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_slack_manifest_declares_what_the_adapter_listens_for() -> None:
    manifest = yaml.safe_load((DEPLOY / "slack-app-manifest.yml").read_text())
    features, settings = manifest["features"], manifest["settings"]

    # Its slash commands and shortcuts are the command catalogue's.
    slash = {c["command"]: c for c in features["slash_commands"]}
    assert set(slash) == set(SLASH_COMMANDS)
    assert [
        (s["type"], s["callback_id"], s["name"], s["description"]) for s in features["shortcuts"]
    ] == [("message", c.name, c.shortcut, c.description) for c in COMMANDS if c.shortcut]
    events = set(settings["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.im", "assistant_thread_started"} <= events
    # What `threadpilot doctor` checks a live app for is what the manifest asks for.
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == set(REQUIRED_SCOPES)
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"]


def _tool(name: str) -> str:
    """A validator installed with the dev extra, next to this Python."""
    return str(Path(sys.executable).parent / name)


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


# SIGTERM drains for THREADPILOT_SHUTDOWN_GRACE_S, then the stopped threads are told: every
# service manager must wait longer than that before it kills.
STOP_NEEDS_S = Settings(_env_file=None).shutdown_grace_s + 10  # type: ignore[call-arg]


def test_the_dockerfile_is_clean_and_ships_the_pinned_cli_non_root() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    linted = _run(_tool("hadolint"), str(DEPLOY / "Dockerfile"))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert f"ARG COPILOT_CLI_VERSION={CLI_VERSION}\n" in dockerfile
    assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", dockerfile, re.M)  # numeric: runAsNonRoot
    assert 'VOLUME ["/data"]' in dockerfile and "THREADPILOT_DATA_DIR=/data" in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile and "/healthz" in dockerfile
    stop_timeout = re.search(r"--stop-timeout (\d+)", dockerfile)
    assert stop_timeout and int(stop_timeout[1]) > STOP_NEEDS_S


def test_the_kubernetes_manifests_match_their_schemas() -> None:
    validated = _run(_tool("kubernetes-validate"), "--strict", str(DEPLOY / "kubernetes.yaml"))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}
    assert {"Secret", "PersistentVolumeClaim", "Deployment", "Service"} <= set(docs)
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    pod = deployment["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > STOP_NEEDS_S
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
    assert mounts["data"] == "/data"
    assert claims["data"] == {"claimName": docs["PersistentVolumeClaim"]["metadata"]["name"]}
    assert container["envFrom"] == [{"secretRef": {"name": docs["Secret"]["metadata"]["name"]}}]


def test_the_compose_file_matches_the_compose_spec() -> None:
    compose = DEPLOY / "docker-compose.yml"
    checked = _run(
        _tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    service = yaml.safe_load(compose.read_text())["services"]["threadpilot"]
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert int(service["stop_grace_period"].removesuffix("s")) > STOP_NEEDS_S
    assert "threadpilot-data:/data" in service["volumes"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_unit_is_accepted_by_systemd(tmp_path: Path) -> None:
    unit = (DEPLOY / "threadpilot.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.M)
    assert exec_start is not None
    # Everything but the install path, which only exists on a real host, is checked.
    (tmp_path / "threadpilot.service").write_text(unit.replace(exec_start[1], "/bin/true"))
    verified = _run("systemd-analyze", "verify", "--man=no", str(tmp_path / "threadpilot.service"))
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    assert stop and int(stop[1]) > STOP_NEEDS_S
    assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit


def test_the_readme_invites_the_bot_with_the_permissions_it_needs() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    assert f"`{invite_url('<APPLICATION_ID>')}`" in readme
