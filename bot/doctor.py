"""`threadpilot doctor`: check the configuration, reach every configured service, and say in
plain words what is missing: which variable, which scope, which intent.

Each check is a coroutine taking the settings and returning findings; the platform checks
live with their adapters (`adapters/*/doctor.py`), which the command line hands in here.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from bot import local_model
from bot.config import Settings
from bot.copilot_cli import VERSION, find_cli, installed_version
from bot.database import PostgresDatabase
from bot.errors import CliNotFound, ConfigError, LocalModelUnavailable
from bot.mcp import probe
from bot.migrations import MIGRATIONS
from bot.profiles import Profiles
from bot.sandbox import find_sandbox

log = logging.getLogger(__name__)

_LOW_DISK_BYTES = 500 * 1024 * 1024
_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True, slots=True)
class Finding:
    area: str  # "data", "runtime", "model", "slack", "discord"
    ok: bool
    text: str  # what was found, or what is missing and how to put it right


Check = Callable[[Settings], Awaitable[list[Finding]]]


def ok(area: str, text: str) -> Finding:
    return Finding(area, True, text)


def problem(area: str, text: str) -> Finding:
    return Finding(area, False, text)


async def diagnose(settings: Settings, checks: Sequence[Check]) -> list[Finding]:
    """Every check in turn; one that fails unexpectedly is a finding, not a crash."""
    findings: list[Finding] = []
    for check in checks:
        try:
            findings += await check(settings)
        except Exception as exc:
            log.debug("doctor check %s failed", check.__name__, exc_info=True)
            findings.append(problem(check.__name__.removeprefix("check_"), f"check failed: {exc}"))
    return findings


def report(findings: Sequence[Finding]) -> str:
    lines = [f"{'ok' if f.ok else 'PROBLEM':8}{f.area}: {f.text}" for f in findings]
    problems = sum(not f.ok for f in findings)
    lines.append(
        "All good." if problems == 0 else f"{problems} problem{'s' * (problems > 1)} to fix."
    )
    return "\n".join(lines)


async def check_data(settings: Settings) -> list[Finding]:
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".doctor"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return [problem("data", f"THREADPILOT_DATA_DIR {data_dir} is not writable ({exc})")]
    findings = [ok("data", f"THREADPILOT_DATA_DIR {data_dir.resolve()} is writable")]
    free = shutil.disk_usage(data_dir).free
    if free < _LOW_DISK_BYTES:
        findings.append(
            problem("data", f"only {free // 2**20} MiB free under {data_dir}: the store stops")
        )
    database = data_dir / "threadpilot.db"
    if database.exists():
        with sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        findings.append(
            ok("data", f"{database.name} passes its integrity check")
            if verdict == "ok"
            else problem("data", f"{database.name} is damaged ({verdict}): restore a backup")
        )
    return findings


# Leases and timed jobs compare this machine's clock with the database's.
_MAX_CLOCK_SKEW_S = 2.0


async def check_database(settings: Settings) -> list[Finding]:
    """THREADPILOT_DATABASE_URL: reachable, migrated, and on time (SQLite is check_data's)."""
    if settings.database_url is None:
        return []
    db = PostgresDatabase(settings.database_url.get_secret_value())

    def probe() -> tuple[int, float]:
        conn = db.connect()
        try:
            return db.schema_version(conn), db.clock(conn) - time.time()
        finally:
            db.close(conn)

    try:
        version, skew = await asyncio.to_thread(probe)
    except db.errors as exc:
        return [problem("database", f"{db.name} is not reachable: {exc}".strip())]
    findings = [ok("database", f"{db.name} is reachable")]
    latest = len(MIGRATIONS)
    if version > latest:
        findings.append(
            problem("database", f"schema version {version} is newer than this threadpilot's")
        )
    else:
        findings.append(
            ok("database", f"schema version {version} of {latest} (the bot migrates at start)")
        )
    findings.append(
        ok("database", f"its clock is {skew:+.1f}s from this machine's")
        if abs(skew) <= _MAX_CLOCK_SKEW_S
        else problem("database", f"its clock is {skew:+.1f}s from this machine's: sync both")
    )
    return findings


async def check_runtime(settings: Settings) -> list[Finding]:
    """The Copilot CLI is there, in the pinned version, and it starts."""
    from bot.runtime import CopilotRuntime  # the SDK takes seconds to import

    try:
        cli = find_cli(settings.cli_dir, settings.cli_path)
    except CliNotFound as exc:
        return [problem("runtime", str(exc))]
    findings = []
    version = installed_version(settings.cli_dir)
    if settings.cli_path is None and version != VERSION:
        findings.append(
            problem(
                "runtime",
                f"Copilot CLI {version} where {VERSION} is pinned: run "
                "`threadpilot runtime install`",
            )
        )
    # The CLI alone: whether the tools can run is check_tools's to say.
    runtime = CopilotRuntime(settings.model_copy(update={"tools": ()}), cli)
    try:
        await runtime.start()
        info = await runtime.info()
        findings.append(ok("runtime", f"Copilot CLI {info.version} starts ({cli})"))
        if local_model.chosen(settings):
            findings.append(check_local_model(settings))
        elif not settings.byok:
            auth = await runtime.client.get_auth_status()
            if auth.isAuthenticated:
                findings.append(ok("model", f"GitHub Copilot as {auth.login or 'a token'}"))
            else:
                findings.append(
                    problem(
                        "model",
                        "no model credentials: set GITHUB_TOKEN (a token with "
                        "Copilot access) or THREADPILOT_PROVIDER_BASE_URL and "
                        "THREADPILOT_MODEL for your own provider",
                    )
                )
    finally:
        await runtime.stop()
    return findings


def check_local_model(settings: Settings) -> Finding:
    """The embedded model's file can be served (read, not loaded: that takes long for a
    big one)."""
    try:
        served = local_model.model_file(settings)
    except LocalModelUnavailable as exc:
        return problem("model", str(exc))
    if served.demo:
        return ok(
            "model",
            "the embedded demo model (no BYOK provider, no GitHub token); "
            "for real answers set GITHUB_TOKEN or THREADPILOT_PROVIDER_BASE_URL",
        )
    return ok(
        "model",
        f"the embedded {served.name} from THREADPILOT_LOCAL_MODEL_FILE {served.path} "
        f"(a context of {served.context_tokens} tokens; no BYOK provider, no GitHub token)",
    )


async def check_provider(settings: Settings) -> list[Finding]:
    """A BYOK provider answers, and takes the key."""
    if not settings.byok or settings.provider_base_url is None:
        return []
    url = settings.provider_base_url.rstrip("/") + "/models"
    headers = {}
    if settings.provider_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.provider_api_key.get_secret_value()}"
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as http,
            http.get(url, headers=headers) as response,
        ):
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [
            problem(
                "model",
                f"THREADPILOT_PROVIDER_BASE_URL {settings.provider_base_url} "
                f"does not answer ({exc or type(exc).__name__})",
            )
        ]
    if status in (401, 403):
        return [problem("model", f"the provider refused THREADPILOT_PROVIDER_API_KEY ({status})")]
    model = settings.model or "(THREADPILOT_MODEL is not set)"
    return [ok("model", f"provider at {settings.provider_base_url} answers; model {model}")]


async def check_profiles(settings: Settings) -> list[Finding]:
    """THREADPILOT_PROFILES: the file validates (every error with its line)."""
    if settings.profiles is None:
        return []
    try:
        profiles = Profiles(settings)
    except ConfigError as exc:
        return [problem("profiles", str(exc))]
    return [ok("profiles", profiles.describe().removeprefix("profiles: "))]


async def check_mcp(settings: Settings) -> list[Finding]:
    """The profiles' MCP servers: each local one starts and answers the handshake."""
    try:
        servers = Profiles(settings).mcp_servers()
    except ConfigError:  # check_profiles says why
        return []
    findings = []
    for name, server in servers.items():
        failure = await probe(server)
        if failure is None:
            findings.append(ok("mcp", f"{name}: {server.command or server.url} answers"))
        else:
            findings.append(problem("mcp", f"{name}: {failure}"))
    return findings


async def check_tools(settings: Settings) -> list[Finding]:
    """The agent's tools can run as configured: `bash` (the settings' or a profile's)
    only in its sandbox."""
    try:
        shell = "bash" in settings.tools or Profiles(settings).enables("bash")
    except ConfigError:  # check_profiles says why
        shell = "bash" in settings.tools
    if not shell:
        return []
    try:
        sandbox = await find_sandbox(settings)
    except ConfigError as exc:
        return [problem("tools", str(exc))]
    network = "with network" if sandbox.network else "without network"
    return [ok("tools", f"bash runs sandboxed by {sandbox.bwrap}, {network}")]


CORE_CHECKS: tuple[Check, ...] = (
    check_data,
    check_database,
    check_runtime,
    check_profiles,
    check_mcp,
    check_tools,
    check_provider,
)
