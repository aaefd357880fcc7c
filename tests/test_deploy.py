"""What deploy/ holds matches what the code expects, and keeps what it promises about
secrets, network reach and resources (checked by parsing the files)."""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from adapters.discord.doctor import invite_url
from adapters.slack.doctor import REQUIRED_SCOPES
from adapters.slack.events import SLASH_COMMANDS
from bot import config
from bot.commands import COMMANDS
from bot.config import Settings
from bot.copilot_cli import VERSION as CLI_VERSION

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

# The secrets, each of which may come from a file named by `<NAME>_FILE`.
SECRETS = frozenset(config.SECRETS)

METADATA = ("169.254.169.254", "fd00:ec2::254")  # the clouds' metadata services (v4, AWS v6)
PRIVATE = ("10.0.0.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "fd12::1")
PUBLIC = "140.82.112.3"  # an address of github.com's


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


def _check_file_secrets(env: dict[str, str], files: dict[str, str]) -> None:
    """`env` holds no secret itself; each `<NAME>_FILE` names one of `files` (path: source)
    and each of `files` is named."""
    assert not SECRETS & set(env), "a secret as a plain environment variable"
    named = {name: path for name, path in env.items() if name.endswith("_FILE")}
    assert named, "no secret arrives as a file"
    assert {name.removesuffix("_FILE") for name in named} <= SECRETS
    assert sorted(named.values()) == sorted(files)


# --- Docker -----------------------------------------------------------------------------


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


def test_the_image_has_bubblewrap_and_listens_beyond_its_own_loopback() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    # Agents' shell commands run in bubblewrap.
    assert re.search(r"apt-get install [^\n]*\bbubblewrap\b", dockerfile)
    # Published ports and probes come from outside the container's loopback.
    env = re.search(r"^ENV (.*?)(?<!\\)$", dockerfile, re.M | re.S)
    assert env and "THREADPILOT_HTTP_HOST=0.0.0.0" in env[1].split()


def test_the_documented_docker_run_publishes_on_loopback_only() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    published = re.findall(r"(?:-p|--publish)[ =](\S+)", dockerfile)
    assert published and all(p.startswith("127.0.0.1:") for p in published), published
    assert "--env-file" in dockerfile and "_FILE=/run/secrets/" in dockerfile


def _compose_service() -> tuple[dict[str, Any], dict[str, Any]]:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return compose, compose["services"]["threadpilot"]


def test_the_compose_file_matches_the_compose_spec() -> None:
    compose = DEPLOY / "docker-compose.yml"
    checked = _run(
        _tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    _, service = _compose_service()
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert int(service["stop_grace_period"].removesuffix("s")) > STOP_NEEDS_S
    assert "threadpilot-data:/data" in service["volumes"]


def test_compose_publishes_on_loopback_only_and_binds_all_interfaces_inside() -> None:
    _, service = _compose_service()
    ports = [str(p) for p in service["ports"]]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
    assert "network_mode" not in service
    # `environment` wins over env_file: a .env cannot take the port back to loopback.
    assert service["environment"]["THREADPILOT_HTTP_HOST"] == "0.0.0.0"


def test_compose_hands_secrets_over_as_files() -> None:
    compose, service = _compose_service()
    env = service["environment"]
    assert isinstance(env, dict)
    defined = compose["secrets"]
    assert all(set(defined[name]) == {"file"} for name in service["secrets"])
    _check_file_secrets(env, {f"/run/secrets/{name}": name for name in service["secrets"]})
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]


# --- Kubernetes -------------------------------------------------------------------------


def _k8s() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}


def _pod(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return docs["Deployment"]["spec"]["template"]["spec"]


def _quantity(value: str) -> int:
    """A Kubernetes quantity ("256Mi", "1Gi", "500M") in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6}
    units |= {"G": 10**9, "T": 10**12, "": 1}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", value)
    assert match, value
    return int(match[1]) * units[match[2]]


def test_the_kubernetes_manifests_match_their_schemas() -> None:
    validated = _run(_tool("kubernetes-validate"), "--strict", str(DEPLOY / "kubernetes.yaml"))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    docs = _k8s()
    assert {"Secret", "PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"} <= set(
        docs
    )
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    pod = _pod(docs)
    assert pod["terminationGracePeriodSeconds"] > STOP_NEEDS_S
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
    assert mounts["data"] == "/data"
    assert claims["data"] == {"claimName": docs["PersistentVolumeClaim"]["metadata"]["name"]}
    # Non-root, read-only, without capabilities or a way to gain privileges.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The probes reach the bot from outside the pod's loopback.
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["THREADPILOT_HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("manifest", ["kubernetes.yaml", "kubernetes-replicas.yaml"])
def test_no_pod_mounts_a_service_account_token(manifest: str) -> None:
    docs = list(yaml.safe_load_all((DEPLOY / manifest).read_text()))
    pods = [d["spec"]["template"]["spec"] for d in docs if "template" in d.get("spec", {})]
    assert pods
    assert all(pod["automountServiceAccountToken"] is False for pod in pods)
    for account in (d for d in docs if d["kind"] == "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_kubernetes_secrets_arrive_as_read_only_files() -> None:
    docs = _k8s()
    pod = _pod(docs)
    (container,) = pod["containers"]
    secret = docs["Secret"]
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    # Nothing of the Secret reaches the environment; settings come from the ConfigMap.
    assert all("secretRef" not in source for source in container.get("envFrom", []))
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in container["env"])
    assert not SECRETS & set(docs["ConfigMap"]["data"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        assert source["secretName"] == secret["metadata"]["name"]
        assert mount["readOnly"] is True
        assert source["defaultMode"] & 0o007 == 0  # nobody but the owner and the bot's group
        files |= {str(PurePosixPath(mount["mountPath"]) / key): key for key in keys}
    env = {e["name"]: e["value"] for e in container["env"]}
    _check_file_secrets(env, files)


def test_the_pod_bounds_its_ephemeral_storage_and_tmp() -> None:
    pod = _pod(_k8s())
    (container,) = pod["containers"]
    resources = container["resources"]
    limit = _quantity(resources["limits"]["ephemeral-storage"])
    assert 0 < _quantity(resources["requests"]["ephemeral-storage"]) <= limit
    (tmp,) = (m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    (volume,) = (v for v in pod["volumes"] if v["name"] == tmp)
    assert 0 < _quantity(volume["emptyDir"]["sizeLimit"]) < limit


def _allows(peers: list[dict[str, Any]], address: str) -> bool:
    """Whether one of a rule's peers takes in `address` (selectors pick pods, not addresses)."""
    ip = ipaddress.ip_address(address)
    for peer in peers:
        block = peer.get("ipBlock")
        if block is None:
            continue
        cidr = ipaddress.ip_network(block["cidr"])
        if ip.version != cidr.version or ip not in cidr:
            continue
        if not any(ip in ipaddress.ip_network(e) for e in block.get("except", [])):
            return True
    return False


def _network_policy() -> dict[str, Any]:
    docs = _k8s()
    policy = docs["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == _pod_labels(docs)
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    return policy


def _pod_labels(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    return docs["Deployment"]["spec"]["template"]["metadata"]["labels"]


def test_the_network_policy_keeps_the_pod_from_the_metadata_service_and_the_cluster() -> None:
    egress = _network_policy()["egress"]
    # Every rule names its destinations and ports: none is open to everything.
    assert all(rule.get("to") and rule.get("ports") for rule in egress)
    for address in METADATA + PRIVATE:
        assert not any(_allows(rule["to"], address) for rule in egress), address
    # What the bot needs: DNS from the cluster's resolver, HTTPS to the internet.
    dns = [r for r in egress if {"protocol": "UDP", "port": 53} in r["ports"]]
    assert dns and all(not _allows(r["to"], PUBLIC) for r in dns)
    assert any(
        {"protocol": "TCP", "port": 443} in rule["ports"] and _allows(rule["to"], PUBLIC)
        for rule in egress
    )


def test_the_network_policy_lets_in_only_port_8080_from_named_sources() -> None:
    ingress = _network_policy()["ingress"]
    assert ingress
    for rule in ingress:
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
        assert rule.get("from") and not _allows(rule["from"], PUBLIC)


# --- systemd ----------------------------------------------------------------------------


def _unit() -> dict[str, list[str]]:
    """The [Service] section: each setting's assignments, in order."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in (DEPLOY / "threadpilot.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), "no continuation lines, so this reader stays simple"
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _one(unit: dict[str, list[str]], key: str) -> str:
    (value,) = unit[key]
    return value


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_unit_is_accepted_by_systemd(tmp_path: Path) -> None:
    unit = (DEPLOY / "threadpilot.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.M)
    assert exec_start is not None
    # Everything but the install path, which only exists on a real host, is checked.
    (tmp_path / "threadpilot.service").write_text(unit.replace(exec_start[1], "/bin/true"))
    verified = _run("systemd-analyze", "verify", "--man=no", str(tmp_path / "threadpilot.service"))
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def test_the_systemd_unit_bounds_and_confines_the_service() -> None:
    unit = _unit()
    assert int(_one(unit, "TimeoutStopSec")) > STOP_NEEDS_S
    assert _one(unit, "NoNewPrivileges") == "yes" and _one(unit, "ProtectSystem") == "strict"
    assert _one(unit, "CapabilityBoundingSet") == ""
    for key in ("MemoryMax", "TasksMax", "LimitNOFILE"):
        assert re.fullmatch(r"\d+[KMG]?", _one(unit, key)), key  # a number, not infinity
    denied = [ipaddress.ip_network(a) for v in unit["IPAddressDeny"] for a in v.split()]
    allowed = [ipaddress.ip_network(a) for v in unit.get("IPAddressAllow", []) for a in v.split()]
    for address in map(ipaddress.ip_address, METADATA):
        assert any(address in network for network in denied), address
        assert not any(address in network for network in allowed), address  # allow would win


def test_the_systemd_unit_hands_secrets_over_as_credentials() -> None:
    unit = _unit()
    credentials = dict(value.split(":", 1) for value in unit["LoadCredential"])
    assert all(source.startswith("/") for source in credentials.values())
    env = dict(
        assignment.split("=", 1)
        for value in unit["Environment"]
        for assignment in shlex.split(value)
    )
    _check_file_secrets(env, {f"%d/{name}": name for name in credentials})
    # The environment file is for settings: secrets not loaded above are told to come the
    # same way, not through it.
    text = (DEPLOY / "threadpilot.service").read_text()
    # (COPILOT_GITHUB_TOKEN is another name for GITHUB_TOKEN.)
    assert all(name.removeprefix("COPILOT_") in text for name in SECRETS)
    assert not set(unit.get("EnvironmentFile", [])) & set(credentials.values())


def test_the_systemd_unit_leaves_bubblewrap_its_namespaces() -> None:
    """The agents' sandbox needs unprivileged user, mount, pid and network namespaces, a
    fresh /proc (refused by the kernel where systemd has mounted over parts of /proc), the
    mount syscalls, and a netlink socket to bring up the sandbox's loopback."""
    unit = _unit()
    needed = {"user", "mnt", "pid", "net", "ipc", "uts"}
    for value in unit.get("RestrictNamespaces", []):
        assert value not in {"yes", "true", "on", "1"}, "RestrictNamespaces forbids them all"
        names = set(value.removeprefix("~").split())
        assert not names & needed if value.startswith("~") else needed <= names
    for key in ("ProtectKernelTunables", "ProtectKernelLogs", "PrivateUsers"):
        assert unit.get(key, ["no"])[-1] in {"no", "false", "off", "0"}, key
    assert unit.get("ProcSubset", ["all"])[-1] == "all"
    families = " ".join(unit.get("RestrictAddressFamilies", []))
    assert not families or ("~" not in families and "AF_NETLINK" in families.split())
    filters = [f for f in unit.get("SystemCallFilter", []) if not f.startswith("~")]
    assert not filters or "@mount" in " ".join(filters).split()


# --- README -----------------------------------------------------------------------------


def test_the_readme_invites_the_bot_with_the_permissions_it_needs() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    assert f"`{invite_url('<APPLICATION_ID>')}`" in readme


def test_the_readme_deploys_with_secret_files_and_a_loopback_port() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    deploying = readme[readme.index("### Deploying") :]
    deploying = deploying[: deploying.index("\n### ", 1)]
    assert "127.0.0.1:8080:8080" in deploying and "_FILE" in deploying
    assert "LoadCredential" in deploying and "NetworkPolicy" in deploying


# --- Replicas (database mode) -----------------------------------------------------------


def test_the_replica_manifests_run_three_that_never_all_go_at_once() -> None:
    path = DEPLOY / "kubernetes-replicas.yaml"
    validated = _run(_tool("kubernetes-validate"), "--strict", str(path))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(path.read_text())}
    assert "PersistentVolumeClaim" not in docs  # nothing of a replica's own to keep
    replicas = docs["StatefulSet"]["spec"]
    assert replicas["replicas"] == 3 and replicas["updateStrategy"] == {"type": "RollingUpdate"}
    budget = docs["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] == replicas["replicas"] - 1
    assert budget["selector"] == replicas["selector"]
    pod, single = replicas["template"]["spec"], _pod(_k8s())
    # As locked down as the one-machine pod; its data dir is scratch.
    assert pod["securityContext"] == single["securityContext"]
    (container,), (alone,) = pod["containers"], single["containers"]
    assert container["securityContext"] == alone["securityContext"]
    assert {v["name"]: v for v in pod["volumes"]}["data"]["emptyDir"]
    secret = docs["Secret"]
    env = {e["name"]: e["value"] for e in container["env"]}
    _check_file_secrets(
        env, {f"/run/secrets/threadpilot/{key}": key for key in secret["stringData"]}
    )
    assert "THREADPILOT_DATABASE_URL_FILE" in env
    # Discord: a shard per pod, from its ordinal, as many as there are pods.
    assert env["THREADPILOT_DISCORD_SHARD_IDS"] == "ordinal"
    assert env["THREADPILOT_DISCORD_SHARD_COUNT"] == str(replicas["replicas"])
    # It may reach PostgreSQL, and otherwise what the one-machine pod may.
    egress = docs["NetworkPolicy"]["spec"]["egress"]
    assert {"protocol": "TCP", "port": 5432} in egress[0]["ports"]
    assert egress[1:] == _k8s()["NetworkPolicy"]["spec"]["egress"]


def test_the_replica_compose_file_runs_two_on_one_database() -> None:
    path = DEPLOY / "docker-compose.replicas.yml"
    checked = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compose = yaml.safe_load(path.read_text())
    replicas = {n: s for n, s in compose["services"].items() if n.startswith("threadpilot")}
    assert len(replicas) == 2
    for service in replicas.values():
        env = service["environment"]
        _check_file_secrets(env, {f"/run/secrets/{name}": name for name in service["secrets"]})
        assert env["THREADPILOT_DATABASE_URL_FILE"] == "/run/secrets/database_url"
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert env["THREADPILOT_DISCORD_SHARD_COUNT"] == str(len(replicas))
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    shards = sorted(s["environment"]["THREADPILOT_DISCORD_SHARD_IDS"] for s in replicas.values())
    assert shards == [str(n) for n in range(len(replicas))]  # a shard each, and each once
    assert compose["services"]["postgres"]["healthcheck"]
