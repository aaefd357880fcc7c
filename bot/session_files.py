"""Session files: the runtime's session state kept in the database, so that any replica
can resume any session (PostgreSQL mode; on one machine it stays on the local disk).

The Copilot CLI reads and writes a session's state (its event log, workspace.yaml, ...)
through a provider per session (the SDK's `session_fs`). Ours keeps each file as rows of
`session_files`: an append adds a row, so a turn costs one small insert however long the
session is. Writes are made under the thread's lease (bot/leases.py) and refused once
another replica has taken the thread over. The CLI names some files by its own home
directory; those are stored under `~/`, the same on every replica. What lies outside the
session's state, the thread's working directory (the agent's file tools come through here
too), is read and written on this replica's own disk, and written under the lease too.

Forking and deleting a session are done here too: the CLI's own `sessions.fork` and
`deleteSession` look at its local disk only (measured: "no persisted or in-memory events
found"). A fork copies the event log up to the branch point, as the CLI does: the start
event names the new session, and a note says where it came from.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from copilot.generated.rpc import SessionFSReaddirWithTypesEntry
from copilot.session import SessionFsConfig
from copilot.session_fs_provider import SessionFsFileInfo, SessionFsProvider

from bot.clock import Clock
from bot.database import Connection
from bot.leases import Fence, fenced
from bot.store import Store

# Where the CLI is told the session's state is: a name only, the same on every replica.
STATE_PATH = "/session"
CONFIG: SessionFsConfig = {
    "initial_working_directory": "/",  # each session is given its thread's own
    "session_state_path": STATE_PATH,
    "conventions": "posix",
}
EVENTS = "events.jsonl"
_HOME_STATE = re.compile(r"^.*/session-state/[^/]+(?:/(.*))?$")


def _key(path: str) -> str:
    """The path as stored: relative inside the session's state, `~/...` for the CLI's
    home copy, else as given."""
    path = path.rstrip("/") or "/"
    if path == STATE_PATH or path.startswith(f"{STATE_PATH}/"):
        return path[len(STATE_PATH) + 1 :]
    home = _HOME_STATE.match(path)
    if home is not None:
        return f"~/{home.group(1) or ''}".rstrip("/")
    return path


def _on_disk(key: str) -> bool:
    """A path outside the session's state: the thread's working directory, which every
    replica has on its own disk. The CLI reaches it through the provider too (its file
    tools included), so it is read and written there, as without a provider."""
    return key.startswith("/")


def _disk_write(key: str, content: str, mode: int | None, how: str) -> None:
    with open(key, how, encoding="utf-8") as file:
        file.write(content)
    if mode is not None:
        os.chmod(key, mode)


def _disk_mkdir(key: str, recursive: bool, mode: int | None) -> None:
    if recursive:
        os.makedirs(key, 0o777 if mode is None else mode, exist_ok=True)
    else:
        os.mkdir(key, 0o777 if mode is None else mode)


def _disk_entries(key: str) -> dict[str, bool]:
    """The entries of directory `key`, each with whether it is a directory."""
    with os.scandir(key) as entries:
        return {entry.name: entry.is_dir() for entry in entries}


def _disk_rm(key: str, recursive: bool, force: bool) -> None:
    try:
        if os.path.isdir(key) and not os.path.islink(key):
            shutil.rmtree(key) if recursive else os.rmdir(key)
        else:
            os.remove(key)
    except FileNotFoundError:
        if not force:
            raise


def _under(key: str) -> str:
    return f"{key}/" if key else ""


def _children(key: str, paths: Iterable[str]) -> dict[str, bool]:
    """The entries right under directory `key`, each with whether it is a directory."""
    prefix = _under(key)
    found: dict[str, bool] = {}
    for path in paths:
        if path != key and path.startswith(prefix):
            name, _, rest = path[len(prefix) :].partition("/")
            found[name] = found.get(name, False) or bool(rest)
    return found


class StaleWrite(PermissionError):
    """A write under a lease another replica has taken since."""


class SessionFiles(SessionFsProvider):
    """One session's files, for the CLI (created per session by the runtime)."""

    def __init__(self, store: Store, session_id: str, fence: Fence | None, clock: Clock) -> None:
        self._store = store
        self._session_id = session_id
        self._fence = fence  # None: a session nobody else can reach (a summary's)
        self._clock = clock

    def _check(self, conn: Connection) -> None:
        """Raise StaleWrite once another replica has taken the thread over."""
        if self._fence is not None and not fenced(conn, self._fence):
            raise StaleWrite(f"{self._session_id}: this replica no longer owns the thread")

    async def _change_disk(self, change: Callable[[], None]) -> None:
        """Make `change` to the working directory while this replica owns the thread: a
        stale owner changes its files no more than the session's state."""
        await self._store.run(self._check)
        await asyncio.to_thread(change)

    async def _write(
        self, sql: str, params: tuple[Any, ...], *, replace: str | None = None
    ) -> None:
        sid = self._session_id

        def work(conn: Connection) -> None:
            self._check(conn)
            if replace is not None:
                conn.execute(
                    "DELETE FROM session_files WHERE session_id = ? AND path = ?", (sid, replace)
                )
            conn.execute(sql, params)

        await self._store.run(work)

    async def _parts(self, key: str) -> list[Any]:
        sid = self._session_id
        return await self._store.run(
            lambda conn: conn.execute(
                "SELECT content, at FROM session_files WHERE session_id = ? AND path = ? "
                "ORDER BY part",
                (sid, key),
            ).fetchall()
        )

    async def _paths(self, key: str) -> dict[str, bool]:
        """The stored paths at or under `key`, each with whether it is a directory."""
        sid, prefix = self._session_id, _under(key)
        rows = await self._store.run(
            lambda conn: conn.execute(
                "SELECT path, content IS NULL FROM session_files WHERE session_id = ? "
                "AND part = 0 AND (path = ? OR substr(path, 1, ?) = ?)",
                (sid, key, len(prefix), prefix),
            ).fetchall()
        )
        return {row[0]: bool(row[1]) for row in rows}

    async def read_file(self, path: str) -> str:
        key = _key(path)
        if _on_disk(key):
            return await asyncio.to_thread(Path(key).read_text, encoding="utf-8")
        parts = await self._parts(key)
        if not parts:
            raise FileNotFoundError(path)
        if parts[0][0] is None:
            raise IsADirectoryError(path)
        return "".join(part[0] for part in parts)

    async def write_file(self, path: str, content: str, mode: int | None = None) -> None:
        key = _key(path)
        if _on_disk(key):
            return await self._change_disk(lambda: _disk_write(key, content, mode, "w"))
        await self._write(
            "INSERT INTO session_files (session_id, path, part, content, at) "
            "VALUES (?, ?, 0, ?, ?)",
            (self._session_id, key, content, self._clock()),
            replace=key,
        )

    async def append_file(self, path: str, content: str, mode: int | None = None) -> None:
        key, sid = _key(path), self._session_id
        if _on_disk(key):
            return await self._change_disk(lambda: _disk_write(key, content, mode, "a"))
        await self._write(
            "INSERT INTO session_files (session_id, path, part, content, at) "
            "SELECT ?, ?, COALESCE(MAX(part) + 1, 0), ?, ? FROM session_files "
            "WHERE session_id = ? AND path = ?",
            (sid, key, content, self._clock(), sid, key),
        )

    async def exists(self, path: str) -> bool:
        key = _key(path)
        if _on_disk(key):
            return await asyncio.to_thread(os.path.exists, key)
        return key in ("", "~") or bool(await self._paths(key))

    async def stat(self, path: str) -> SessionFsFileInfo:
        key = _key(path)
        if _on_disk(key):
            found = await asyncio.to_thread(os.stat, key)
            at = datetime.fromtimestamp(found.st_mtime, UTC)
            return SessionFsFileInfo(
                stat.S_ISREG(found.st_mode), stat.S_ISDIR(found.st_mode), found.st_size, at, at
            )
        parts = await self._parts(key)
        if parts and parts[0][0] is not None:
            size = sum(len(part[0].encode()) for part in parts)
            first = datetime.fromtimestamp(parts[0][1], UTC)
            return SessionFsFileInfo(
                True, False, size, datetime.fromtimestamp(parts[-1][1], UTC), first
            )
        if parts or await self.exists(path):
            now = datetime.fromtimestamp(self._clock(), UTC)
            return SessionFsFileInfo(False, True, 0, now, now)
        raise FileNotFoundError(path)

    async def mkdir(self, path: str, recursive: bool, mode: int | None = None) -> None:
        key = _key(path)
        if await self.exists(path):
            return
        if _on_disk(key):
            return await self._change_disk(lambda: _disk_mkdir(key, recursive, mode))
        await self._write(
            "INSERT INTO session_files (session_id, path, part, content, at) "
            "VALUES (?, ?, 0, NULL, ?) ON CONFLICT DO NOTHING",
            (self._session_id, key, self._clock()),
        )

    async def readdir(self, path: str) -> list[str]:
        return [entry.name for entry in await self.readdir_with_types(path)]

    async def readdir_with_types(self, path: str) -> Sequence[SessionFSReaddirWithTypesEntry]:
        key = _key(path)
        if _on_disk(key):
            entries = await asyncio.to_thread(_disk_entries, key)
        else:
            paths = await self._paths(key)
            if not paths and not await self.exists(path):
                raise FileNotFoundError(path)
            entries = {
                name: nested or paths.get(_under(key) + name, False)
                for name, nested in _children(key, paths).items()
            }
        return [
            SessionFSReaddirWithTypesEntry.from_dict(
                {"name": name, "type": "directory" if directory else "file"}
            )
            for name, directory in sorted(entries.items())
        ]

    async def rm(self, path: str, recursive: bool, force: bool) -> None:
        key = _key(path)
        if _on_disk(key):
            return await self._change_disk(lambda: _disk_rm(key, recursive, force))
        prefix = _under(key)
        if not force and not await self.exists(path):
            raise FileNotFoundError(path)
        await self._write(
            "DELETE FROM session_files WHERE session_id = ? "
            "AND (path = ? OR substr(path, 1, ?) = ?)",
            (self._session_id, key, len(prefix), prefix),
        )

    async def rename(self, src: str, dest: str) -> None:
        source, target = _key(src), _key(dest)
        if _on_disk(source) and _on_disk(target):
            return await self._change_disk(lambda: os.replace(source, target))
        if _on_disk(source) or _on_disk(target):  # between the state and the disk: a copy
            await self.write_file(dest, await self.read_file(src))
            return await self.rm(src, recursive=False, force=False)
        if not await self._parts(source):
            raise FileNotFoundError(src)
        await self._write(
            "UPDATE session_files SET path = ? WHERE session_id = ? AND path = ?",
            (target, self._session_id, source),
            replace=target,
        )


def _forked_events(
    log: str, session_id: str, source: str, to_event_id: str | None, now: str
) -> str:
    """The event log of a fork: the source's before `to_event_id`, started as the new
    session, with the CLI's note of where it came from."""
    kept: list[str] = []
    last_id: str | None = None
    for line in filter(str.strip, log.splitlines()):
        event = json.loads(line)
        if to_event_id is not None and event.get("id") == to_event_id:
            break
        if event.get("type") == "session.start":
            event["data"] = {**event.get("data", {}), "sessionId": session_id, "startTime": now}
        kept.append(
            json.dumps(event, separators=(",", ":")) if event["type"] == "session.start" else line
        )
        last_id = event.get("id", last_id)
    where = f" before event {to_event_id}" if to_event_id else ""
    note = {
        "type": "session.info",
        "id": str(uuid.uuid4()),
        "timestamp": now,
        "parentId": last_id,
        "data": {"infoType": "fork", "message": f"Forked from {source}{where} ({session_id})."},
    }
    kept.append(json.dumps(note, separators=(",", ":")))
    return "\n".join(kept) + "\n"


class SharedState:
    """Every runtime's session state, of every replica, in the database."""

    config = CONFIG

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def files(self, session_id: str, fence: Fence | None) -> SessionFiles:
        """The provider the CLI reads and writes `session_id`'s state through; writes
        are refused once `fence` no longer holds."""
        return SessionFiles(self._store, session_id, fence, self._clock)

    async def fork(self, source: str, to_event_id: str | None) -> str:
        """Copy session `source` into a new session, up to `to_event_id`; its id. Raises
        FileNotFoundError when `source` has no event log."""
        session_id = str(uuid.uuid4())
        now = self._clock()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        stamp = stamp.replace("+00:00", "Z")

        def work(conn: Connection) -> None:
            files: dict[str, list[str | None]] = {}
            for path, content in conn.execute(
                "SELECT path, content FROM session_files WHERE session_id = ? ORDER BY path, part",
                (source,),
            ).fetchall():
                files.setdefault(path, []).append(content)
            if EVENTS not in files:
                raise FileNotFoundError(f"{source} has no events to fork")
            for path, parts in files.items():
                text = None if parts[0] is None else "".join(p or "" for p in parts)
                if text is not None and path == EVENTS:
                    text = _forked_events(text, session_id, source, to_event_id, stamp)
                elif text is not None:
                    text = text.replace(f"id: {source}\n", f"id: {session_id}\n")
                conn.execute(
                    "INSERT INTO session_files (session_id, path, part, content, at) "
                    "VALUES (?, ?, 0, ?, ?)",
                    (session_id, path, text, now),
                )

        await self._store.run(work)
        return session_id

    async def delete(self, session_id: str) -> None:
        """Remove a session's files. Raises FileNotFoundError if it had none."""
        removed = await self._store.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM session_files WHERE session_id = ?", (session_id,)
                ).rowcount
            )
        )
        if not removed:
            raise FileNotFoundError(session_id)
