"""Which messages the bot answers: one rule in the core (bot/routing.py), the same for
every platform, checked through the router on the real runtime."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from bot.inbound import Inbound
from bot.routing import Route
from tests.conftest import AppFactory, RecordingSink

_IDS = itertools.count(1)


@dataclass(frozen=True)
class Case:
    why: str
    platform: str = "slack"
    addressed: bool = False
    in_dm: bool = False
    from_bot: bool = False
    text: str = "a message"
    known: bool = False  # the bot has answered in the thread before
    require_mention: bool = False  # THREADPILOT_SLACK_REQUIRE_MENTION
    expected: Route = Route.ANSWER


CASES = [
    Case("a mention starts a conversation", addressed=True),
    Case("people talking among themselves", expected=Route.IGNORE),
    Case("a follow-up in a bot thread needs no mention", known=True),
    Case(
        "unless mentions are required",
        known=True,
        require_mention=True,
        expected=Route.CONTEXT,
    ),
    Case("a mention when they are", known=True, require_mention=True, addressed=True),
    Case("a direct message", in_dm=True, require_mention=True),
    Case("another bot in a bot thread", from_bot=True, known=True, expected=Route.CONTEXT),
    Case(
        "another bot, even mentioning it",
        from_bot=True,
        addressed=True,
        known=True,
        expected=Route.CONTEXT,
    ),
    Case("another bot elsewhere", from_bot=True, addressed=True, expected=Route.IGNORE),
    Case("the setting is Slack's", platform="discord", known=True, require_mention=True),
    Case(
        "a message Discord blanked (no Message Content intent)",
        platform="discord",
        known=True,
        text="",
        expected=Route.CONTEXT,
    ),
    Case("a Discord DM", platform="discord", in_dm=True),
    Case("a Discord mention", platform="discord", addressed=True),
    Case("the console", platform="console", addressed=True),
]


@pytest.mark.parametrize("case", CASES, ids=[case.why for case in CASES])
async def test_the_router_answers_keeps_or_ignores_each_message(
    make_chat: AppFactory, case: Case
) -> None:
    chat = await make_chat(slack_require_mention=case.require_mention)
    key = chat.key(f"routing-{next(_IDS)}", case.platform)
    if case.known:
        await chat.say(key, "an earlier question")  # the bot answers: now it knows the thread
    event_id = f"route-{next(_IDS)}"
    sink = RecordingSink()
    inbound = Inbound(
        event_id=event_id,
        key=key,
        user_id="U2",
        text=case.text,
        message_ref=f"msg-{event_id}",
        addressed=case.addressed,
        in_dm=case.in_dm,
        from_bot=case.from_bot,
    )
    await chat.app.router.dispatch(inbound, sink)

    row = await chat.app.store.run(
        lambda conn: conn.execute(
            "SELECT kind FROM turns WHERE event_id = ?", (f"{case.platform}:{event_id}",)
        ).fetchone()
    )
    outcome = {Route.ANSWER: "turn", Route.CONTEXT: "context", Route.IGNORE: None}
    assert (row[0] if row else None) == outcome[case.expected]
    assert (sink.text == f"echo: {case.text}") == (case.expected is Route.ANSWER)
    if case.expected is not Route.ANSWER:
        assert sink.rendered == 0  # nothing at all reached the thread
