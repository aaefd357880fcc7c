"""Who may talk to the bot where, and how often."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.access import Access
from bot.inbound import Inbound
from bot.store import Store
from bot.thread_key import ThreadKey
from tests.conftest import AppFactory, FakeClock, make_settings
from tests.fake_model import FakeModel
from tests.postgres import new_database


async def test_allow_lists_refuse_politely_once_and_never_reach_the_model(
    make_chat: AppFactory, fake_model: FakeModel, caplog: pytest.LogCaptureFixture
) -> None:
    chat = await make_chat(
        allowed_users=frozenset({"slack:U1"}),
        allowed_workspaces=frozenset({"slack:T01"}),
        admins=frozenset({"slack:UADMIN"}),
    )
    allowed = await chat.say("acl", "from an allowed user")
    assert allowed.text == "echo: from an allowed user"

    refused = await chat.say("acl", "from a stranger", user="U666", event_id="Ev-stranger")
    (answer,) = refused.declined  # to the asker alone, opening nothing
    assert answer.startswith("Sorry, I'm not available to you here") and not refused.events
    assert fake_model.requests_with("from a stranger") == []
    assert "refused slack:U666: user U666 is not allowed" in caplog.text
    again = await chat.say("acl", "from a stranger", user="U666", event_id="Ev-stranger")
    assert again.rendered == 0  # a redelivery is not refused twice

    admin = await chat.say("acl", "from an admin", user="UADMIN")
    assert admin.text == "echo: from an admin"
    other_workspace = ThreadKey("slack", "T99", "C1", "1")
    elsewhere = await chat.say(other_workspace, "other workspace")
    assert "not available to you here" in elsewhere.declined[0]


async def test_channel_allow_list(make_chat: AppFactory) -> None:
    chat = await make_chat(allowed_channels=frozenset({"slack:C-only-this"}))
    refused = await chat.say("any", "hello")
    assert "not available to you here" in refused.declined[0]


async def test_rate_limits_per_user_and_per_thread_with_a_polite_reply(
    make_chat: AppFactory, fake_model: FakeModel
) -> None:
    clock = FakeClock()
    chat = await make_chat(clock=clock, user_turns_per_minute=2, thread_turns_per_minute=3)
    for n in (1, 2):
        assert (await chat.say("busy", f"turn {n}")).text == f"echo: turn {n}"
    third = await chat.say("busy", "turn 3")
    assert third.declined == ["You're sending messages faster than I can take them. "
                              "Please wait 60 seconds and try again."]  # fmt: skip
    assert fake_model.requests_with("turn 3") == []
    assert (await chat.say("busy", "/help")).text.startswith("I am a GitHub Copilot agent")

    other = await chat.say("busy", "another person", user="U2")  # their own allowance
    assert other.text == "echo: another person"
    thread_full = await chat.say("busy", "a third person", user="U3")  # the thread's 3 used
    assert "faster than I can take them" in thread_full.declined[0]

    clock.advance(61)
    assert (await chat.say("busy", "turn 4")).text == "echo: turn 4"


async def test_replicas_count_rate_limits_together(postgres: str, tmp_path: Path) -> None:
    """Two replicas on one database: a person's turns count against one allowance,
    whichever replica takes them."""
    store = await Store.open(new_database(postgres))
    clock = FakeClock()
    settings = make_settings(tmp_path, "http://unused", user_turns_per_minute=3)
    one, two = Access(settings, store, clock), Access(settings, store, clock)
    key = ThreadKey("slack", "T1", "C1", "1.0")

    def turn(n: int) -> Inbound:
        return Inbound(event_id=f"Ev{n}", key=key, user_id="U1", text="hi")

    try:
        assert [await access.too_often(turn(n)) for n, access in enumerate((one, two, one))] == [
            None, None, None
        ]  # fmt: skip
        clock.advance(10)
        refusal = await two.too_often(turn(4))
        assert refusal is not None and "wait 50 seconds" in refusal
        clock.advance(51)  # the first turn has left the window
        assert await two.too_often(turn(5)) is None
    finally:
        await store.close()
