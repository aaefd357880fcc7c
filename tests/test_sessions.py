"""Sessions on the real runtime: restart, eviction, and sessions the runtime dropped."""

from __future__ import annotations

from pathlib import Path

from bot.runtime import CopilotRuntime
from tests.conftest import AppFactory, Chat, make_settings
from tests.fake_model import FakeModel, user_texts


async def test_a_thread_resumes_its_history_after_a_full_restart(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_model.base_url)

    async def start() -> Chat:
        return await Chat.on_own_runtimes(settings, cli_path, tmp_path / "threadpilot.db")

    first = await start()
    key = first.key("1714900000.000100")
    said = await first.say(key, "remember the word pineapple")
    old_pid = first.app.runtimes.loads()[0].pid
    await first.app.close()  # the CLI process exits; nothing is left in memory

    second = await start()
    try:
        assert second.app.runtimes.loads()[0].pid != old_pid
        sink = await second.say(key, "which word?")
        assert sink.text == "echo: which word?"
        request = fake_model.requests_with("which word?")[-1]
        assert user_texts(request) == ["remember the word pineapple", "which word?"]
        thread = await second.app.store.thread(key)
        assert thread is not None and thread.generation == 1 and thread.session_state == "active"
        # A redelivery of the first message after the restart is not answered again.
        replay = await second.say(key, "remember the word pineapple", event_id=said.event_id)
        assert replay.rendered == 0
        assert len(fake_model.requests_with("remember the word pineapple")) == 1
    finally:
        await second.app.close()


async def test_lru_eviction_keeps_the_cap_and_evicted_threads_resume(
    make_chat: AppFactory, fake_model: FakeModel
) -> None:
    chat = await make_chat(max_live_sessions=2)
    for name in ("lru-1", "lru-2", "lru-3"):
        await chat.say(name, f"first message in {name}")
        assert chat.app.sessions.live_count <= 2

    lru1 = await chat.app.store.thread(chat.key("lru-1"))
    assert lru1 is not None and not chat.app.sessions.is_live(lru1)  # least recently used

    sink = await chat.say("lru-1", "back in lru-1")
    assert sink.text == "echo: back in lru-1"
    request = fake_model.requests_with("back in lru-1")[-1]
    assert user_texts(request) == ["first message in lru-1", "back in lru-1"]
    assert chat.app.sessions.live_count == 2


async def test_a_session_the_runtime_dropped_is_resumed_with_its_context(
    chat: Chat, runtime: CopilotRuntime, fake_model: FakeModel
) -> None:
    await chat.say("dropped", "the code is 4711")
    thread = await chat.app.store.thread(chat.key("dropped"))
    assert thread is not None and chat.app.sessions.is_live(thread)

    # What the runtime's own idle timer does: it forgets the session, keeping it on disk.
    await runtime.client._client.request("session.detach", {"sessionId": thread.session_id})  # type: ignore[union-attr]

    sink = await chat.say("dropped", "what is the code?")
    assert sink.errors == []
    assert sink.text == "echo: what is the code?"
    request = fake_model.requests_with("what is the code?")[-1]
    assert user_texts(request) == ["the code is 4711", "what is the code?"]
