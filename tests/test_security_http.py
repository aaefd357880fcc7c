"""The HTTP port under attack: /status through a proxy on this machine, the port's reach,
connections that never finish their headers, forged or oversized Slack deliveries, and
log lines that try to become several. Each test performs the attack."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import socket
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot import logs
from bot.config import Settings
from bot.http_server import HttpServer
from tests.conftest import Chat, reap, run_threadpilot, start_bot, stop_bot
from tests.fake_model import FakeModel
from tests.fake_slack import SIGNING_SECRET, FakeSlack
from tests.slack_harness import SlackHarness

STATUS_HEAD = "threadpilot status\nruntimes: Copilot CLI 1.0.102"


def lan_address() -> str | None:
    """An address of this machine other than loopback (the source address of its default
    route), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # sends nothing: only picks the route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@dataclass
class Bot:
    process: asyncio.subprocess.Process
    home: Path  # its working directory; the data dir is `data` in it
    host: str | None  # where its log says the HTTP port listens
    port: int


async def start_limited_bot(
    home: Path,
    fake_model: FakeModel,
    fake_slack: FakeSlack,
    cli_path: Path,
    *,
    soft: int,
    hard: int | None = None,
    **env: str,
) -> Bot:
    """`threadpilot` in Socket Mode, started as a host whose file limits are `soft` (and
    `hard`) would start it: a sitecustomize sets them before the bot's code runs."""
    site = home / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import resource\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard or 'hard'}))\n"
    )
    process = await start_bot(
        home, fake_model, cli_path, PYTHONPATH=str(site), **fake_slack.env, **env
    )
    assert process.stderr is not None
    listening: re.Match[str] | None = None
    # Slack connects and the runtime starts while the rest starts: in any order.
    waiting = {"slack: connected", "copilot runtime 0 started"}
    async with asyncio.timeout(60):
        while line := (await process.stderr.readline()).decode():
            listening = listening or re.search(r" on (?:(\S+) )?port (\d+)", line)
            waiting = {sign for sign in waiting if sign not in line}
            if listening and not waiting:
                return Bot(process, home, listening[1], int(listening[2]))
    raise AssertionError(f"the bot did not start: {await reap(process)}")


@pytest.fixture(scope="module")
async def bot(
    tmp_path_factory: pytest.TempPathFactory,
    fake_model: FakeModel,
    fake_slack: FakeSlack,
    cli_path: Path,
) -> AsyncIterator[Bot]:
    """A bot in Socket Mode, THREADPILOT_HTTP_HOST unset, started with a soft limit of 256
    open files (the hard limit as the machine has it)."""
    started = await start_limited_bot(
        tmp_path_factory.mktemp("bot"), fake_model, fake_slack, cli_path, soft=256
    )
    yield started
    await stop_bot(started.process)


async def get(url: str, timeout_s: float = 10) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as client,
        client.get(url) as response,
    ):
        return response.status, await response.text()


@contextlib.asynccontextmanager
async def forwarder(target_port: int) -> AsyncIterator[int]:
    """A TCP forwarder on this machine in front of `target_port`, as a reverse proxy, a
    tunnel or a sidecar is; yields its own port. The bot sees its peers as 127.0.0.1."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1])


Stalled = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def stall(host: str, port: int, count: int) -> Stalled:
    """`count` connections that send half a request's headers and then nothing (their
    writers kept: a StreamWriter closes its connection when it is collected)."""

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: threadpilot\r\nX-Slow: ")
        await writer.drain()
        return reader, writer

    return await asyncio.gather(*(one() for _ in range(count)))


def any_closed(stalled: Stalled) -> bool:
    return any(reader.at_eof() for reader, _ in stalled)


def hang_up(stalled: Stalled) -> None:
    for _, writer in stalled:
        writer.close()


async def closed_by_the_server(stalled: Stalled) -> set[bytes]:
    """Wait until the server has closed every one of them; what they were sent."""
    sent = await asyncio.gather(*(reader.read() for reader, _ in stalled))
    hang_up(stalled)
    return set(sent)


def file_limits(pid: int) -> tuple[int, int]:
    """A process's soft and hard limits of open files, as the kernel has them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files limit")


# --- /status is not on the port ------------------------------------------------------------


async def test_status_is_not_served_through_a_proxy_but_threadpilot_status_reads_the_socket(
    bot: Bot, cli_path: Path
) -> None:
    async with forwarder(bot.port) as port:
        assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200  # it does forward
        assert (await get(f"http://127.0.0.1:{port}/status"))[0] == 404
    assert (await get(f"http://127.0.0.1:{bot.port}/status"))[0] == 404

    admin = bot.home / "data" / "admin.sock"
    assert stat.S_ISSOCK(admin.stat().st_mode) and stat.S_IMODE(admin.stat().st_mode) == 0o600
    process = await run_threadpilot(bot.home, cli_path, "status")
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert out.decode().startswith(STATUS_HEAD) and "\nrecent errors: none\n" in out.decode()


# --- where the port listens -----------------------------------------------------------------


async def test_in_socket_mode_the_port_is_not_reachable_from_other_machines(bot: Bot) -> None:
    assert (await get(f"http://127.0.0.1:{bot.port}/healthz"))[0] == 200
    address = lan_address()
    if address is not None:
        with pytest.raises(aiohttp.ClientConnectorError):
            await get(f"http://{address}:{bot.port}/healthz")
    assert bot.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("values", "host"),
    [
        ({}, "127.0.0.1"),  # the console, Discord
        ({"SLACK_BOT_TOKEN": "x", "SLACK_APP_TOKEN": "x"}, "127.0.0.1"),  # Socket Mode
        ({"SLACK_BOT_TOKEN": "x", "SLACK_SIGNING_SECRET": "x"}, "0.0.0.0"),  # Slack posts
        ({"SLACK_BOT_TOKEN": "x", "SLACK_APP_TOKEN": "x", "THREADPILOT_HTTP_HOST": "::"}, "::"),
        (
            {"SLACK_BOT_TOKEN": "x", "SLACK_SIGNING_SECRET": "x", "THREADPILOT_HTTP_HOST": "::1"},
            "::1",
        ),
    ],
)
def test_the_port_binds_all_interfaces_only_for_slack_http_mode_or_when_told(
    values: dict[str, str], host: str
) -> None:
    assert Settings(_env_file=None, **values).http_bind_host == host  # type: ignore[call-arg]


# --- connections that never finish --------------------------------------------------------


async def test_the_bot_raises_its_file_limit_and_holds_more_stalled_connections(
    bot: Bot,
) -> None:
    soft, hard = file_limits(bot.process.pid)
    assert soft == hard > 256
    if hard < 1024:
        pytest.skip(f"the hard limit of open files ({hard}) leaves no room to try")
    stalled = await stall("127.0.0.1", bot.port, 400)
    # Asked while all 400 hang: not one of them has been closed by a timeout yet.
    assert await get(f"http://127.0.0.1:{bot.port}/healthz", timeout_s=4) == (
        200,
        '{"status": "ok"}',
    )
    assert not any_closed(stalled)
    hang_up(stalled)


# Connections beyond the listen backlog wait on SYN retries (1, 3, 7, 15 s ...): on a busy
# machine this test once needed more than the default two minutes.
@pytest.mark.timeout(240)
async def test_out_of_files_the_bot_recovers_as_stalled_ones_time_out_and_logs_one_line(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    """A host whose hard limit is 256 open files; the port listens where
    THREADPILOT_HTTP_HOST says, and nowhere else."""
    address = lan_address()
    if address is None:
        pytest.skip("this machine has no address but loopback to bind the port to")
    bot = await start_limited_bot(
        tmp_path, fake_model, fake_slack, cli_path, soft=256, hard=256,
        THREADPILOT_HTTP_HOST=address,
    )  # fmt: skip
    try:
        assert bot.host == address
        with pytest.raises(aiohttp.ClientConnectorError):
            await get(f"http://127.0.0.1:{bot.port}/healthz")

        stalled = await stall(address, bot.port, 300)  # more than it can have open
        # Answered once the header timeout (5 s) has closed the stalled ones.
        assert (await get(f"http://{address}:{bot.port}/healthz", timeout_s=30))[0] == 200
        hang_up(stalled)
    finally:
        log = await stop_bot(bot.process)
    # Hundreds of connections it could not accept, every second: one line.
    troubles = [line for line in log.splitlines() if "unaccepted connections" in line]
    assert len(troubles) == 1 and "Too many open files" in troubles[0]
    assert len(log) < 4000 and "Traceback" not in log and " ERROR " not in log


async def test_connections_that_never_finish_their_headers_are_closed_and_healthz_answers(
    chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    header_timeout_s = 2.0
    server = HttpServer(chat.app, port=0, header_timeout_s=header_timeout_s)
    await server.start()
    try:
        caplog.set_level(logging.DEBUG)
        started = time.monotonic()
        stalled = await stall("127.0.0.1", server.port, 250)
        assert await get(f"http://127.0.0.1:{server.port}/healthz") == (200, '{"status": "ok"}')
        assert not any_closed(stalled)

        # Malformed requests, which aiohttp logs as an ERROR (and a traceback) each.
        for request in [b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"] * 50 + [
            b"GET / HTTP/9.9\r\n\r\n"
        ] * 50:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            assert re.match(rb"HTTP/1\.[01] 400 ", await reader.read())
            writer.close()

        # Nothing was sent to the stalled ones: they were closed, by the header timeout.
        assert await closed_by_the_server(stalled) == {b""}
        assert time.monotonic() - started >= header_timeout_s
    finally:
        await server.stop()
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == ["WARNING"]
    assert "unaccepted connections: 1 since the last" in caplog.text and len(caplog.text) < 1000


# --- Slack's HTTP mode ----------------------------------------------------------------------


def signed(body: bytes, secret: str = SIGNING_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


async def post(url: str, body: bytes, headers: dict[str, str], chunked: bool = False) -> int:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with (
        aiohttp.ClientSession() as client,
        client.post(url, data=chunks() if chunked else body, headers=headers) as response,
    ):
        return response.status


def padded(size: int, marker: str) -> bytes:
    """An event_callback of about `size` bytes, its padding made of `marker`."""
    padding = marker * (size // len(marker))
    return json.dumps({"type": "event_callback", "padding": padding}).encode()


async def test_forged_and_oversized_deliveries_are_refused_unlogged_and_real_ones_answered(
    slack_http: tuple[SlackHarness, str], caplog: pytest.LogCaptureFixture
) -> None:
    slack, url = slack_http
    marker = "FORGED-PAYLOAD-"
    megabyte = padded(1_000_000, marker)
    assert await post(url, megabyte, {"Content-Type": "application/json"}) in (401, 413)
    assert await post(url, megabyte, signed(megabyte, "not-the-secret")) in (401, 413)
    small = padded(100_000, marker)  # under the size cap: its signature decides
    assert await post(url, small, {"Content-Type": "application/json"}) == 401
    assert await post(url, small, signed(small, "not-the-secret")) == 401
    assert marker not in caplog.text
    too_big = padded(300_000, marker)  # signed, but no delivery of Slack's is this large
    assert await post(url, too_big, signed(too_big)) == 413
    assert await post(url, too_big, signed(too_big), chunked=True) == 413  # no length said
    assert len(caplog.text) < 2000  # one line, not one per refusal
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    ts, events = slack.fake.user_message(slack.channel, "<@UBOT> a real one")
    body = json.dumps(events[-1]).encode()
    assert await post(url, body, signed(body)) == 200
    await slack.fake.wait_for(lambda: slack.texts(ts) == ["echo: a real one"])


# --- log lines --------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_a_logged_text_cannot_break_its_line(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "user said a\rb\x85c\u2028d\u2029e\vf\x1cg 2030-01-01T00:00:00.000Z ERROR forged"
    logs.setup(Settings(_env_file=None, THREADPILOT_LOG_JSON=as_json))  # type: ignore[call-arg]
    try:
        logging.getLogger("threadpilot.test").warning("%s", text)
    finally:
        logging.getLogger().handlers.clear()
    out = capsys.readouterr().err
    assert out.endswith("\n") and len(out[:-1].splitlines()) == 1, out
    if as_json:
        assert json.loads(out)["message"] == text
    else:
        escaped = "a\\rb\\x85c\\u2028d\\u2029e\\x0bf\\x1cg 2030-01-01T00:00:00.000Z ERROR forged"
        assert out.endswith(f"WARNING threadpilot.test: user said {escaped}\n")
