"""The `threadpilot` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib
import logging
import os
import resource
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from bot import logs
from bot.config import Settings, load_settings
from bot.copilot_cli import VERSION, install_cli
from bot.errors import ThreadpilotError
from bot.inbound import CoreToCome
from bot.local_model import WEAK_MODEL_NOTE

if TYPE_CHECKING:
    from aiohttp import web

    from adapters.discord import DiscordAdapter
    from adapters.slack import SlackAdapter
    from bot.model_choice import ModelSource
    from bot.replies import Platform

log = logging.getLogger("threadpilot")
_PR_SET_DUMPABLE = 4  # linux/prctl.h
_TELLING_S = 10  # to tell the messages that came while the bot failed to start


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadpilot",
        description="A persistent GitHub Copilot agent session for every chat thread.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "run", help="run the bot (the default); the console when no platform is configured"
    )
    commands.add_parser("console", help="chat with the bot in this terminal")
    commands.add_parser("status", help="print the running bot's status (as the admin command)")
    commands.add_parser("doctor", help="check the configuration and reach every configured service")
    runtime = commands.add_parser("runtime", help="manage the Copilot CLI")
    runtime_commands = runtime.add_subparsers(dest="runtime_command", required=True)
    runtime_commands.add_parser("install", help=f"install the pinned Copilot CLI {VERSION}")
    return parser


class _Platforms:
    """The platforms a run serves, and their connections: what connects on its own
    (Slack's Socket Mode, Discord) connects from `connect()` on, while the core starts,
    and what it receives waits for the core (`core`); Slack over HTTP takes its events
    on the bot's HTTP server, once that is up."""

    def __init__(self, settings: Settings, console: bool) -> None:
        from adapters.console import ConsoleAdapter, stdin_lines
        from adapters.discord import DiscordAdapter
        from adapters.slack import SlackAdapter

        self.core = CoreToCome()
        chat = not console
        slack = SlackAdapter(self.core, settings) if settings.slack_bot_token and chat else None
        discord = DiscordAdapter(self.core, settings) if settings.discord_token and chat else None
        self._slack = slack
        self._over_http = slack if slack is not None and not slack.socket_mode else None
        self._on_their_own = [
            p for p in (slack, discord) if p is not None and p is not self._over_http
        ]
        self.made: list[Platform] = [p for p in (slack, discord) if p is not None]
        if not self.made:
            terminal = sys.stdin.isatty()
            self.made.append(ConsoleAdapter(self.core, stdin_lines(), interactive=terminal))
        self._connected: list[SlackAdapter | DiscordAdapter] = []
        self._connecting: asyncio.Task[None] | None = None

    def connect(self) -> None:
        """Begin connecting what connects on its own."""

        async def connect() -> None:
            for platform in self._on_their_own:
                await platform.start()
                self._connected.append(platform)

        self._connecting = asyncio.create_task(connect())

    async def connected(self, web_app: web.Application) -> None:
        """Start Slack over HTTP on `web_app`; wait until everything is connected."""
        if self._over_http is not None:
            self._over_http.mount(web_app)
            await self._over_http.start()
            self._connected.append(self._over_http)
        if self._connecting is not None:
            await self._connecting

    async def stop_receiving(self) -> None:
        """Shutting down: Slack delivers no more here (answers under way still post)."""
        if self._slack is not None and self._slack in self._connected:
            await self._slack.stop_receiving()

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.wait([self._connecting])
            if not self._connecting.cancelled():
                self._connecting.exception()  # raised to whoever waited for it, if anyone
        for platform in self._connected:
            await platform.stop()


async def _serve(settings: Settings, console: bool) -> None:
    """Run the bot: the configured platforms, or the console; until SIGTERM or SIGINT
    (even one that comes while it is still starting), then shut down cleanly. SIGHUP
    reads the profiles file again. The platforms connect while the core starts; turns
    wait for their runtime."""
    from adapters.console import ConsoleAdapter

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    platforms = _Platforms(settings, console)
    platforms.connect()
    try:
        # The Copilot SDK takes about a second to import: off the loop, while connecting.
        await asyncio.to_thread(importlib.import_module, "bot.http_server")
        from bot.app import App
        from bot.http_server import HttpServer

        app = await App.start(settings, lambda _core, _settings: platforms.made)
    except BaseException:
        # What came meanwhile is told it was not taken (Slack will not send it again).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_TELLING_S):
                await platforms.core.fail()
        await platforms.stop()
        raise
    platforms.core.serve(app.router)
    loop.add_signal_handler(signal.SIGHUP, app.profiles.reload)  # the file is read again
    http = HttpServer(app, app.settings.http_port, app.settings.http_bind_host)
    terminal = app.platforms.get(ConsoleAdapter.name)
    _announce(app.model_source, _choice(console, list(app.platforms)), terminal is not None)
    try:
        await http.start()
        await platforms.connected(http.web_app)
        app.scheduler.start()
        await app.take_hand_overs()
        app.tell_interrupted_soon()
        await app.runtimes.ready()  # a runtime that cannot start ends the bot
        if isinstance(terminal, ConsoleAdapter):
            await _first(terminal.run(), stop.wait())  # /quit, end of input, or a signal
        else:
            await stop.wait()
        log.info("stopping")
        await platforms.stop_receiving()
        await app.stop_taking()
        await app.router.drain(app.settings.shutdown_grace_s)
    finally:
        await platforms.stop()
        await http.stop()
        await app.close()


def _choice(console: bool, platforms: list[str]) -> str:
    """Where it runs and why, in one line."""
    if console:
        return "console (asked for)"
    if platforms != ["console"]:
        tokens = {"slack": "SLACK_BOT_TOKEN", "discord": "DISCORD_TOKEN"}
        return f"{' and '.join(platforms)} ({', '.join(tokens[p] for p in platforms)} set)"
    return "console (no SLACK_BOT_TOKEN or DISCORD_TOKEN)"


def _announce(model: ModelSource, where: str, terminal: bool) -> None:
    """What runs on which model, and a plain word on the embedded model: to the console's
    reader, else to the log."""
    choice = f"threadpilot: {where}; model: {model.description}"
    weak = model.local is not None and model.local.model.demo
    if terminal:
        print(choice, flush=True)
        if weak:
            print(WEAK_MODEL_NOTE, flush=True)
    else:
        log.info("%s", choice)
        if weak:
            log.warning("%s", WEAK_MODEL_NOTE)


async def _first(*work: Coroutine[Any, Any, object]) -> None:
    """Run `work` until the first of them ends; cancel the others."""
    tasks = [asyncio.create_task(coroutine) for coroutine in work]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _doctor(settings: Settings) -> int:
    """Print what works and what is missing; the exit code says whether anything is."""
    from adapters.discord.doctor import check_discord
    from adapters.slack.doctor import check_slack
    from bot.doctor import CORE_CHECKS, diagnose, report

    findings = await diagnose(settings, [*CORE_CHECKS, check_slack, check_discord])
    print(report(findings))
    return 0 if all(finding.ok for finding in findings) else 1


def _status(settings: Settings) -> None:
    """Ask the running bot over its admin socket, which only this user can open."""
    import aiohttp

    async def ask() -> str:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(settings.admin_socket)),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as session,
            session.get("http://threadpilot/status") as response,
        ):
            response.raise_for_status()
            return await response.text()

    try:
        print(asyncio.run(ask()), end="")
    except (aiohttp.ClientError, OSError) as exc:
        where = settings.admin_socket
        print(f"threadpilot: no running bot answers at {where} ({exc})", file=sys.stderr)
        sys.exit(1)


def _raise_file_limit() -> None:
    """Every connection takes a file descriptor: use all the hard limit allows, not the
    soft limit's 1,024 many systems start a service with."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # macOS refuses an unlimited one
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _not_dumpable() -> None:
    """Keep other processes of this user (an agent's tool among them, were it to escape its
    sandbox) from reading this one's memory or environment, which hold the secrets."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("could not make the process non-dumpable (errno %d)", ctypes.get_errno())


def main(argv: list[str] | None = None) -> None:
    # Everything the bot and its runtime write (the database, session state, the agent's
    # working directories) is for this user alone.
    os.umask(0o077)
    _raise_file_limit()
    _not_dumpable()
    args = _parser().parse_args(argv)
    command = args.command or "run"
    try:
        settings = load_settings()
        has_platform = bool(settings.slack_bot_token or settings.discord_token)
        in_terminal = command in ("console", "status") or (command == "run" and not has_platform)
        level = None
        if command == "doctor":  # its findings say all there is
            level = logging.ERROR
        elif in_terminal:  # only trouble is worth interleaving with the conversation
            level = logging.WARNING
        logs.setup(settings, level)
        if command == "runtime":
            path = install_cli(settings.cli_dir)
            print(f"Copilot CLI {VERSION} installed: {path}")
        elif command == "status":
            _status(settings)
        elif command == "doctor":
            sys.exit(asyncio.run(_doctor(settings)))
        elif command == "console":
            asyncio.run(_serve(settings, console=True))
        else:
            asyncio.run(_serve(settings, console=False))
    except ThreadpilotError as exc:  # raised on purpose, written for the reader
        print(f"threadpilot: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
