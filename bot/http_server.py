"""HttpServer: health, readiness and metrics on THREADPILOT_HTTP_PORT; the admin status on
a unix socket in the data dir (aiohttp).

On the port (127.0.0.1 unless Slack's HTTP mode or THREADPILOT_HTTP_HOST wants more):
/healthz   the process is alive and its event loop answers
/readyz    the runtime is started, the store open and every platform connected (else 503)
/metrics   Prometheus text format
Adapters that take webhooks (Slack's HTTP mode) add their routes to `web_app`.

On `<THREADPILOT_DATA_DIR>/admin.sock`, mode 0600 (this user alone):
/status    the admin status text (`threadpilot status`)

Admin endpoints are kept off the port altogether: a peer's address proves nothing once a
proxy, tunnel or sidecar on this machine forwards to the port.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST

from bot.app import App
from bot.logs import Tally

log = logging.getLogger(__name__)
# aiohttp's own server log, given a name of ours so that its filter touches no other server.
_aiohttp_log = logging.getLogger(f"{__name__}.aiohttp")

# aiohttp's server has no timeout for reading a request's headers. Its keep-alive timer
# serves as one: armed when a connection opens and again after each response, it closes
# the connection unless a complete request has arrived by then, whether nothing came or
# half a header block. So these seconds bound both a slow header and an idle keep-alive.
# Slack must be answered in 3 s; nothing legitimate takes longer to send its headers.
HEADER_TIMEOUT_S = 5.0
_ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's words, on EMFILE
_LoopErrors = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class _PeerErrors(logging.Filter):
    """aiohttp logs each malformed or aborted request as an ERROR with a traceback: count
    those instead. A handler's own failure still gets its full line."""

    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self._tally = tally

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionError):
            self._tally.add(f"{record.getMessage()}: {type(exc).__name__}")
            return False
        return True


class HttpServer:
    def __init__(
        self,
        app: App,
        port: int,
        host: str = "127.0.0.1",
        header_timeout_s: float = HEADER_TIMEOUT_S,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._header_timeout_s = header_timeout_s
        self._runners: list[web.AppRunner] = []
        self._socket: Path | None = None  # the admin socket, once bound
        self._troubles = Tally(log, "http: malformed, aborted or unaccepted connections")
        self._peer_errors = _PeerErrors(self._troubles)
        self._loop_errors: _LoopErrors | None = None  # the loop's handler before ours
        self.web_app = web.Application()
        self.web_app.router.add_get("/healthz", self._healthz)
        self.web_app.router.add_get("/readyz", self._readyz)
        self.web_app.router.add_get("/metrics", self._metrics)
        self._admin_app = web.Application()
        self._admin_app.router.add_get("/status", self._status)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0: any free one)."""
        if not self._runners or not self._runners[0].addresses:
            return self._port
        return int(self._runners[0].addresses[0][1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_errors = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_error)
        _aiohttp_log.addFilter(self._peer_errors)
        tcp = await self._runner(self.web_app)
        await web.TCPSite(tcp, self._host, self._port).start()
        admin = await self._runner(self._admin_app)
        path = self._app.settings.admin_socket
        try:
            await web.UnixSite(admin, path).start()
            os.chmod(path, 0o600)
            self._socket = path
            where = f"admin status on {path}"
        except OSError as exc:  # e.g. a data dir too deep for a socket path: serve without
            where = f"no admin socket ({exc}): `threadpilot status` cannot reach this bot"
            log.warning("http: %s", where)
        log.info(
            "http: health, readiness and metrics on %s port %d; %s", self._host, self.port, where
        )

    async def _runner(self, web_app: web.Application) -> web.AppRunner:
        runner = web.AppRunner(
            web_app, access_log=None, keepalive_timeout=self._header_timeout_s, logger=_aiohttp_log
        )
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners = []
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)
            self._socket = None
        _aiohttp_log.removeFilter(self._peer_errors)
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() == self._on_loop_error:
            loop.set_exception_handler(self._loop_errors)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of file descriptors, asyncio logs a traceback for every connection it cannot
        accept (hundreds a second) and retries a second later: count them instead."""
        if context.get("message") == _ACCEPT_FAILED:
            self._troubles.add(f"{_ACCEPT_FAILED}: {context.get('exception')}")
        elif self._loop_errors is not None:
            self._loop_errors(loop, context)
        else:
            loop.default_exception_handler(context)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = self._app.readiness()
        ready = all(checks.values())
        # Troubles (Discord commands not registered, say) are reported, but do not make
        # the bot unready: it serves all the same, and Slack's HTTP events must arrive.
        return web.json_response(
            {
                "status": "ready" if ready else "not ready",
                "checks": checks,
                "troubles": self._app.troubles(),
            },
            status=200 if ready else 503,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._app.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(text=await self._app.status.text() + "\n")
