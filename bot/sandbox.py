"""Sandbox: the agent's shell commands, run in bubblewrap (`bwrap`).

A command sees the system's programs read-only, its thread's working directory read-write
and nothing else of the machine: no other thread's files, no session state, no data
directory, no secret. It starts from an empty environment plus a short allow-list, in its
own process namespace (so `/proc` shows only its own processes, never the bot's or the
CLI's environment), without capabilities, and without network unless the operator allows
it (THREADPILOT_SHELL_NETWORK). Why bubblewrap rather than a second uid: it needs no
privilege or setup beyond a Debian package, confines a process to a filesystem view of
our choosing, and costs a few milliseconds per command (`python -m bench.sandbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.errors import ConfigError

# From the host, read-only, where present: programs, libraries and the few files of /etc
# that programs need to run, resolve names and trust certificates. Nothing else of /etc:
# a host may keep credentials there.
_SYSTEM = ("/usr", "/opt")
_TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64")
_ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "resolv.conf",
    "ssl",
)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LIMIT = 30_000  # characters of a command's output the model gets back


@dataclass(frozen=True, slots=True)
class CommandResult:
    output: str  # stdout and stderr as they interleaved, the end kept if long
    exit_code: int | None  # None: it was stopped (timed out)


class SandboxUnavailable(Exception):
    """bubblewrap is missing or cannot create namespaces here; the message says which."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    bwrap: str
    network: bool = False

    @classmethod
    async def find(cls, network: bool = False) -> Sandbox:
        """A sandbox that works on this machine, or SandboxUnavailable saying why not."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`"
            )
        sandbox = cls(bwrap, network)
        with tempfile.TemporaryDirectory() as probe:
            result = await sandbox.run("true", Path(probe), timeout_s=10)
        if result.exit_code != 0:
            raise SandboxUnavailable(
                "bubblewrap cannot create a sandbox here (user namespaces may be disabled, "
                f"or a container forbids them): {result.output.strip() or 'no output'}"
            )
        return sandbox

    def argv(self, command: str, workspace: Path, writable: bool = True) -> list[str]:
        workspace = workspace.resolve()
        args = [
            self.bwrap,
            "--die-with-parent",
            "--new-session",  # no TIOCSTI into a terminal the bot may have
            "--unshare-all",
            "--cap-drop", "ALL",
            "--clearenv",
            "--setenv", "PATH", PATH,
            "--setenv", "HOME", str(workspace),
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "TERM", "dumb",
        ]  # fmt: skip
        if self.network:
            args.append("--share-net")
        for path in _SYSTEM:
            args += ["--ro-bind-try", path, path]
        for link in map(Path, _TOP_LEVEL_LINKS):
            if link.is_symlink():  # merged /usr: keep the link, not a second copy
                args += ["--symlink", str(link.readlink()), str(link)]
            else:
                args += ["--ro-bind-try", str(link), str(link)]
        for name in _ETC:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        args += ["--bind" if writable else "--ro-bind", str(workspace), str(workspace)]
        args += ["--chdir", str(workspace), "--", "/bin/bash", "-c", command]
        return args

    async def run(
        self, command: str, workspace: Path, timeout_s: float, writable: bool = True
    ) -> CommandResult:
        """`command` run by bash in the sandbox, in `workspace` (read-only unless
        `writable`); stopped after `timeout_s`."""
        process = await asyncio.create_subprocess_exec(
            *self.argv(command, workspace, writable),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            # bwrap's own environment shows as the sandbox's /proc/1/environ: none of ours.
            env={"PATH": PATH},
        )
        assert process.stdout is not None
        tail = _Tail(OUTPUT_LIMIT)
        try:
            async with asyncio.timeout(timeout_s):
                while chunk := await process.stdout.read(65536):
                    tail.add(chunk)
                exit_code: int | None = await process.wait()
        except TimeoutError:
            exit_code = None
        finally:
            if process.returncode is None:
                # The sandbox's init dies with bwrap, and every process in it with that.
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
                await process.wait()
        return CommandResult(tail.text(), exit_code)


async def find_sandbox(settings: Settings) -> Sandbox:
    """The sandbox for the `bash` tool; a ConfigError saying why, where there is none: no
    command runs unconfined."""
    try:
        return await Sandbox.find(network=settings.shell_network)
    except SandboxUnavailable as exc:
        raise ConfigError(
            f"bash is enabled (THREADPILOT_TOOLS or a profile), but commands only run "
            f"sandboxed: {exc}. Install bubblewrap, or take bash out of the tools."
        ) from None


class _Tail:
    """The last `limit` characters of a stream of bytes, and how much came before."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()
        self._dropped = 0

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - 4 * self._limit  # bytes: up to 4 per character
        if excess > 0:
            del self._data[:excess]
            self._dropped += excess

    def text(self) -> str:
        text = self._data.decode(errors="replace")
        if self._dropped or len(text) > self._limit:
            return f"[earlier output left out]\n{text[-self._limit :]}"
        return text
