"""Nothing the bot posts can ping a crowd, whatever the model (prompt-injected, or just
quoting) or a person's own words put in it: checked on the requests that reach the fake
Slack and the fake Discord."""

from __future__ import annotations

import json

import pytest

from adapters.slack.client import defuse, defusing
from tests.conftest import SlackFactory
from tests.discord_harness import DiscordHarness
from tests.fake_discord import BOT_ID, TEXT_CHANNEL
from tests.fake_model import FakeModel, Reply

LOUD = (
    "Attention <!channel> and <!here|here> and <!everyone>, also <!subteam^S0123|@oncall> "
    "and <!subteam^S0456>, plain @here @channel @everyone, and `<!here>` in code."
)
_LIVE = ("<!channel", "<!here", "<!everyone", "<!subteam", "@here", "@channel", "@everyone")


def test_defusing_keeps_the_words_and_drops_the_mentions() -> None:
    text = defuse(LOUD)
    assert not any(live in text for live in _LIVE)
    assert "@\u2060channel" in text and "@\u2060oncall" in text and "@\u2060group" in text
    assert (
        defuse("mail me at ada@here.example or <@U123>") == "mail me at ada@here.example or <@U123>"
    )


async def test_a_response_url_reply_is_defused_too() -> None:
    sent: list[dict[str, object]] = []

    async def respond(**kwargs: object) -> None:
        sent.append(kwargs)

    await defusing(respond)(text="<!here> look", response_type="ephemeral")
    assert sent == [{"text": "@\u2060here look", "response_type": "ephemeral"}]


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_loud_answer_reaches_slack_without_a_live_broadcast(
    make_slack: SlackFactory, fake_model: FakeModel, streaming: bool
) -> None:
    slack = await make_slack()
    slack.fake.streaming_enabled = streaming
    try:
        question = f"repeat after me {streaming}"
        fake_model.script(question, Reply(text=LOUD, chunks=6))
        ts, _ = await slack.say(question)
    finally:
        slack.fake.streaming_enabled = True

    posted = [
        json.dumps(call.args)
        for call in slack.fake.calls
        if call.args.get("channel") == slack.channel and call.method.startswith("chat.")
    ]
    assert posted and not any(live in args for args in posted for live in _LIVE)
    (answer,) = slack.replies(ts)
    assert "oncall" in answer.text and "everyone" in answer.text  # the words stay


async def test_every_discord_message_the_bot_sends_allows_no_mentions(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    loud = "@everyone @here <@&555> <@123> the deploy is done"
    fake_model.script("announce it", Reply(text=loud, chunks=4))
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> announce it")
    await discord_bot.dispatched(message.id)
    thread = await discord_bot.thread_of(message)
    await discord_bot.use("ask", TEXT_CHANNEL, {"prompt": "@everyone echo this"})

    sent = [
        call
        for call in fake.calls
        if call.method in ("POST", "PATCH")
        and ("/messages" in call.path or call.path.startswith("/webhooks/"))
        and isinstance(call.body, dict)
        and "content" in call.body
    ]
    assert len(sent) >= 3  # the answer (posted, edited), the /ask echo and its answer
    for call in sent:
        assert call.body.get("allowed_mentions") == {"parse": []}, (call.path, call.body)
    assert discord_bot.texts(thread)[-1] == loud  # shown as written, pinging nobody
