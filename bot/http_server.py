"""HttpServer: health, readiness, metrics and status on THREADPILOT_HTTP_PORT (aiohttp).

/healthz   the process is alive and its event loop answers
/readyz    the runtime is started, the store open and every platform connected (else 503)
/metrics   Prometheus text format
/status    the admin status text; only for requests from this machine (`threadpilot status`)

Adapters that take webhooks (Slack's HTTP mode) add their routes to `web_app`.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.app import App

log = logging.getLogger(__name__)


def _from_this_machine(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


class HttpServer:
    def __init__(self, app: App, port: int, host: str = "0.0.0.0") -> None:
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.web_app = web.Application()
        self.web_app.router.add_get("/healthz", self._healthz)
        self.web_app.router.add_get("/readyz", self._readyz)
        self.web_app.router.add_get("/metrics", self._metrics)
        self.web_app.router.add_get("/status", self._status)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0: any free one)."""
        if self._runner is None or not self._runner.addresses:
            return self._port
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        self._runner = web.AppRunner(self.web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("http: health, readiness, metrics and status on port %d", self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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
        if not _from_this_machine(request):
            return web.Response(status=403, text="status is only served to this machine\n")
        return web.Response(text=await self._app.status.text() + "\n")
