"""Session state in the database (PostgreSQL mode): a second runtime with an empty home
resumes a session another wrote, forks and deletes work without the CLI's disk, and a
write under a lease another replica has taken is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.clock import system_clock
from bot.errors import SessionNotFound
from bot.leases import Leases
from bot.profiles import Provider, ThreadProfile
from bot.runtime import CopilotRuntime, SessionSpec
from bot.session_files import EVENTS, SharedState, StaleWrite
from bot.store import Store
from bot.thread_key import ThreadKey
from tests.conftest import make_settings
from tests.fake_model import FakeModel, user_texts
from tests.postgres import new_database


@pytest.fixture
async def store(postgres: str) -> AsyncIterator[Store]:
    store = await Store.open(new_database(postgres))
    yield store
    await store.close()


async def _runtime(
    root: Path, fake_model: FakeModel, cli_path: Path, shared: SharedState
) -> CopilotRuntime:
    runtime = CopilotRuntime(
        make_settings(root, fake_model.base_url), cli_path, root=root, shared=shared
    )
    await runtime.start()
    return runtime


async def _ask(runtime: CopilotRuntime, session: object, text: str) -> None:
    await session.send_and_wait(text)  # type: ignore[attr-defined]


async def test_a_session_written_by_one_runtime_resumes_in_another_from_the_database(
    store: Store, fake_model: FakeModel, cli_path: Path, tmp_path: Path
) -> None:
    shared = SharedState(store, system_clock)
    one = await _runtime(tmp_path / "one", fake_model, cli_path, shared)
    two = await _runtime(tmp_path / "two", fake_model, cli_path, shared)
    try:
        # The fake model, as the settings' provider.
        agent = ThreadProfile(provider=Provider.of(make_settings(tmp_path, fake_model.base_url)))
        spec = SessionSpec("sf-history", tmp_path / "ws", agent)
        spec.workspace.mkdir()
        session = await one.create(spec)
        for word in ("alpha", "beta", "gamma"):
            await _ask(one, session, f"sf remember {word}")
        await one.disconnect(session)
        # Nothing of it on either runtime's disk: the database holds it.
        assert not list((tmp_path / "one").rglob(EVENTS))

        resumed = await two.resume(spec)
        await _ask(two, resumed, "sf what did I say?")
        body = fake_model.requests_with("sf what did I say?")[-1]
        assert user_texts(body)[-4:] == [
            "sf remember alpha",
            "sf remember beta",
            "sf remember gamma",
            "sf what did I say?",
        ]
        await two.disconnect(resumed)

        # A fork keeps the history, up to where it is cut; a delete removes it.
        forked = await two.fork("sf-history")
        branch = await one.resume(SessionSpec(forked, spec.workspace, agent))
        await _ask(one, branch, "sf and in the branch?")
        body = fake_model.requests_with("sf and in the branch?")[-1]
        assert user_texts(body)[-2:] == ["sf what did I say?", "sf and in the branch?"]
        await one.disconnect(branch)
        await one.delete("sf-history")
        with pytest.raises(SessionNotFound):
            await one.delete("sf-history")
        with pytest.raises(SessionNotFound):
            await two.resume(spec)
    finally:
        await one.stop()
        await two.stop()


async def test_a_write_under_a_lease_taken_over_is_refused(store: Store, tmp_path: Path) -> None:
    key = ThreadKey("slack", "T1", "C1", "1.0")
    thread = await store.ensure_thread(key)
    shared = SharedState(store, system_clock)
    first, second = Leases(store, system_clock), Leases(store, system_clock, ttl_s=0.0)
    await first.heartbeat()
    await second.heartbeat()
    stale = await second.take(thread.id)
    assert stale is not None
    files = shared.files(thread.session_id, stale)
    await files.append_file("/session/events.jsonl", "one\n")
    # The lease lapses at once (ttl 0): the other replica takes it, with a new epoch.
    fresh = await first.take(thread.id)
    assert fresh is not None and fresh.epoch == stale.epoch + 1
    with pytest.raises(StaleWrite):
        await files.append_file("/session/events.jsonl", "two\n")
    with pytest.raises(StaleWrite):  # nor a file of the thread's working directory
        await files.write_file(str(tmp_path / "late.txt"), "too late\n")
    assert not (tmp_path / "late.txt").exists()
    await shared.files(thread.session_id, fresh).append_file("/session/events.jsonl", "three\n")
    assert await files.read_file("/session/events.jsonl") == "one\nthree\n"


async def test_the_working_directory_is_read_and_written_on_disk_not_in_the_database(
    store: Store, tmp_path: Path
) -> None:
    """The CLI reaches the thread's checkout through the provider as well (its file
    tools): there it is this replica's disk, every operation, as without a provider."""
    files = SharedState(store, system_clock).files("s-disk", None)
    (tmp_path / "kept.md").write_text("on disk\n")
    assert await files.read_file(str(tmp_path / "kept.md")) == "on disk\n"
    await files.mkdir(str(tmp_path / "src" / "pkg"), recursive=True)
    await files.write_file(str(tmp_path / "src" / "pkg" / "a.py"), "a = 1\n", 0o600)
    await files.append_file(str(tmp_path / "src" / "pkg" / "a.py"), "b = 2\n")
    assert (tmp_path / "src" / "pkg" / "a.py").read_text() == "a = 1\nb = 2\n"
    assert (tmp_path / "src" / "pkg" / "a.py").stat().st_mode & 0o777 == 0o600
    entries = await files.readdir_with_types(str(tmp_path / "src"))
    assert [(e.name, e.type.value) for e in entries] == [("pkg", "directory")]
    await files.rename(str(tmp_path / "src" / "pkg" / "a.py"), str(tmp_path / "b.py"))
    assert sorted(await files.readdir(str(tmp_path))) == ["b.py", "kept.md", "src"]
    # Between the session's state and the disk, a rename is a copy.
    await files.write_file("/session/plan.md", "the plan\n")
    await files.rename("/session/plan.md", str(tmp_path / "plan.md"))
    assert (tmp_path / "plan.md").read_text() == "the plan\n"
    assert not await files.exists("/session/plan.md")
    await files.rm(str(tmp_path / "src"), recursive=True, force=False)
    await files.rm(str(tmp_path / "gone"), recursive=False, force=True)
    with pytest.raises(FileNotFoundError):
        await files.rm(str(tmp_path / "gone"), recursive=False, force=False)
    assert not (tmp_path / "src").exists()
    stored = await store.run(
        lambda conn: conn.execute(
            "SELECT path FROM session_files WHERE session_id = 's-disk'"
        ).fetchall()
    )
    assert stored == []  # nothing of the checkout went to the database
