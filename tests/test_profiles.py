"""Channel profiles (bot/profiles.py): the file, its errors, which profile a thread gets,
and what that changes for the agent, the real runtime answering through the fake model."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.profiles import Profiles, Provider, ThreadProfile, load
from bot.redaction import Redaction
from bot.sandbox import Sandbox
from bot.thread_key import ThreadKey
from tests.conftest import AppFactory, FakeClock, make_settings, start_bot, stop_bot
from tests.discord_harness import DiscordHarness
from tests.fake_discord import BOT_ID, TEXT_CHANNEL
from tests.fake_model import FakeModel, Reply, ToolCall, system_text, user_texts
from tests.fake_slack import FakeSlack
from tests.slack_harness import SlackHarness
from tests.test_replicas import answers, say
from tests.test_turns import file


def write(path: Path, text: str) -> Path:
    path.write_text(dedent(text).lstrip())
    return path


def settings_with(path: Path | None, **overrides: object) -> Settings:
    return make_settings(path.parent if path else Path("."), "http://127.0.0.1:9/v1",
                         profiles=path, **overrides)  # fmt: skip


# -- the file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # a misspelt setting, on line 4
            """
            default:
              model: m1
            profiles:
              payments:
                channels: [slack:C1]
                modle: m2
            """,
            ":6: profiles.payments.modle: Extra inputs are not permitted",
        ),
        (
            """
            profiles:
              payments:
                channels:
                  - slack:C1
                  - C2
            """,
            ":5: profiles.payments.channels.1: 'C2' is not platform:id",
        ),
        (
            """
            profiles:
              payments:
                tools: [view, write_bash]
            """,
            ":3: profiles.payments.tools: write_bash would run commands outside the sandbox",
        ),
        (
            """
            default:
              redact:
                patterns: ['ACCT-(\\d+']
            """,
            ":3: default.redact.patterns: 'ACCT-(\\\\d+' is not a regular expression",
        ),
        (
            """
            profiles:
              a: {channels: [slack:C1]}
              b:
                channels: [slack:C2, slack:C1]
            """,
            ":4: profiles.b.channels.1: slack:C1 is already given profile 'a'",
        ),
        (
            """
            profiles:
              repo:
                working_directory: not-there
            """,
            ":3: profiles.repo.working_directory:",
        ),
        (
            """
            default:
              provider:
                base_url: http://models.internal/v1
                api_key_file: no-such-key
            """,
            ":4: default.provider.api_key_file:",
        ),
        ("default:\n  model: [unclosed\n", ":3: not valid YAML"),
    ],
)
def test_a_bad_profiles_file_is_refused_naming_file_line_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "profiles.yaml", text)
    with pytest.raises(ConfigError) as refused:
        load(path)
    assert f"{path}{expected}" in str(refused.value)


def test_an_approval_may_not_be_waited_for_longer_than_a_turn_lasts(tmp_path: Path) -> None:
    path = write(tmp_path / "profiles.yaml", "default:\n  approval_timeout_s: 600\n")
    with pytest.raises(ConfigError) as refused:
        load(path, turn_timeout_s=300)
    assert (
        f"{path}:2: default.approval_timeout_s: 600 s is not shorter than "
        "THREADPILOT_TURN_TIMEOUT_S (300 s)"
    ) in str(refused.value)
    assert load(path, turn_timeout_s=900).file.default.approval_timeout_s == 600


def test_levels_apply_broadest_first_each_overriding_what_it_names(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    path = write(
        tmp_path / "profiles.yaml",
        """
        default:
          system_prompt: You help Acme.
        profiles:
          acme-slack:
            workspaces: [slack:T1]
            model: big
            tools: [view]
          payments:
            channels: [slack:C9]
            system_prompt: You work on payments.
            working_directory: repo
            redact: {}
          incident:
            threads: [slack:C9/1700.1]
            model: fast
            writable: true
        """,
    )
    profiles = Profiles(settings_with(path, model="settings-model", tools=("grep",)))

    elsewhere = profiles.resolve(ThreadKey("discord", "G1", "C1", "T"))
    assert (elsewhere.system_prompt, elsewhere.model, elsewhere.tools) == (
        "You help Acme.",
        "settings-model",
        ("grep",),
    )
    general = profiles.resolve(ThreadKey("slack", "T1", "C2", "1700.1"))
    assert (general.model, general.tools, general.working_directory) == ("big", ("view",), None)
    assert general.writable  # its own directory

    payments = profiles.resolve(ThreadKey("slack", "T1", "C9", "1700.2"))
    assert payments.system_prompt == "You work on payments."
    assert payments.model == "big" and payments.tools == ("view",)
    assert payments.working_directory == (tmp_path / "repo").resolve()
    assert not payments.writable  # a directory of the team's: read-only unless it says
    assert payments.redact == Redaction()

    incident = profiles.resolve(ThreadKey("slack", "T1", "C9", "1700.1"))
    assert incident.model == "fast" and incident.writable
    assert incident.working_directory == payments.working_directory
    explained = incident.explain()
    assert "'payments' (channel slack:C9)" in explained
    assert "model: fast (from 'incident' (thread slack:C9/1700.1))" in explained
    assert "tools: view (from 'acme-slack' (workspace slack:T1))" in explained
    assert "writable: yes (from 'incident'" in explained

    # Without a file: the settings, for every thread.
    plain_settings = settings_with(None, model="settings-model", tools=("grep",))
    plain = Profiles(plain_settings)
    assert plain.resolve(ThreadKey("slack", "T1", "C9", "1")) == ThreadProfile(
        model="settings-model", tools=("grep",), provider=Provider.of(plain_settings)
    )
    assert (
        "Profiles here, broadest first: none (the bot's own settings)"
        in plain.resolve(ThreadKey("slack", "T", "C", "1")).explain()
    )


def test_redaction_removes_contacts_cards_and_the_profiles_own_patterns() -> None:
    redact = Redaction(patterns=(r"ACCT-\d{8}",))
    text = (
        "Mail ada.l@example.co.uk or call +44 20 7946 0958 / (555) 123-4567; card "
        "4111 1111 1111 1111, account ACCT-12345678. Order 4111111111111112 and ts "
        "1700000000.000100 on 2026-11-27 at 10:30 are fine."
    )
    redacted = redact.apply(text)
    assert redacted.text == (
        "Mail [email removed] or call [phone number removed] / [phone number removed]; card "
        "[card number removed], account [redacted text removed]. Order 4111111111111112 "
        "and ts 1700000000.000100 on 2026-11-27 at 10:30 are fine."
    )
    assert redacted.counts == {"email": 1, "phone number": 2, "card number": 1, "redacted text": 1}
    assert not Redaction(emails=False, phones=False, cards=False).apply(text)


# -- what it changes, end to end -------------------------------------------------------


async def test_a_channels_profile_gives_its_threads_their_prompt_model_and_directory(
    make_chat: AppFactory, fake_model: FakeModel, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("payments service: settles at 17:00")
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("a file outside the checkout")
    profiles = write(tmp_path / "profiles.yaml", "profiles: {}\n")
    chat = await make_chat(profiles=profiles)
    channel = chat.key("x").channel
    write(
        profiles,
        f"""
        profiles:
          payments:
            channels: [slack:{channel}]
            system_prompt: PAYMENTS-PROMPT you work on payments.
            model: payments-model
            tools: [view, create]
            working_directory: repo
        """,
    )
    chat.app.profiles.reload()
    fake_model.script(
        "pf read the readme",
        Reply(
            tool_calls=[
                ToolCall("view", {"path": str(repo / "README.md")}),
                ToolCall("view", {"path": str(secret)}),
                ToolCall("create", {"path": str(repo / "new.txt"), "file_text": "x"}),
            ]
        ),
    )

    await chat.say("pf", "pf read the readme")

    first, follow_up = fake_model.requests_with("pf read the readme")[-2:]
    assert "PAYMENTS-PROMPT" in system_text(first) and first["model"] == "payments-model"
    assert sorted(t["function"]["name"] for t in first["tools"]) == ["create", "view"]
    results = [str(m["content"]) for m in follow_up["messages"] if m["role"] == "tool"]
    assert "settles at 17:00" in results[0]
    assert "outside the checkout" not in " ".join(results)
    assert not (repo / "new.txt").exists()  # read-only: the profile did not say writable

    # A thread of another channel gets the settings' agent; `profile` says which applies.
    other = ThreadKey("slack", "T01", "COTHER", "1")
    await chat.say(other, "pf elsewhere")
    elsewhere = fake_model.requests_with("pf elsewhere")[-1]
    assert "PAYMENTS-PROMPT" not in system_text(elsewhere)
    assert elsewhere["model"] == "fake-model" and not elsewhere.get("tools")
    shown = (await chat.say("pf", "/profile")).text
    assert f"'payments' (channel slack:{channel})" in shown
    assert f"working directory: {repo.resolve()} (read-only)" in shown
    assert (
        "Profiles here, broadest first: none (the bot's own settings)"
        in (await chat.say(other, "/profile")).text
    )
    assert fake_model.requests_with("/profile") == []  # a command, not a turn


async def test_a_changed_file_applies_to_live_threads_and_a_broken_one_changes_nothing(
    make_chat: AppFactory, fake_model: FakeModel, tmp_path: Path
) -> None:
    profiles = write(tmp_path / "profiles.yaml", "default:\n  system_prompt: FIRST-PROMPT\n")
    chat = await make_chat(profiles=profiles, admins=frozenset({"slack:UADMIN"}))
    await chat.say("rl", "rl one")
    assert "FIRST-PROMPT" in system_text(fake_model.requests_with("rl one")[-1])

    write(profiles, "default:\n  system_prompt: SECOND-PROMPT, longer\n")
    assert "NOT" not in await chat.app.scheduler.check_profiles()
    await chat.say("rl", "rl two")
    body = fake_model.requests_with("rl two")[-1]
    assert "SECOND-PROMPT" in system_text(body)  # the live session took it
    assert user_texts(body)[-2:] == ["rl one", "rl two"]  # and kept its history

    write(profiles, "default:\n  system_promt: THIRD\n")
    said = await chat.app.scheduler.check_profiles()
    assert "NOT taken" in said and "profiles.yaml:2: default.system_promt" in said
    await chat.say("rl", "rl three")
    assert "SECOND-PROMPT" in system_text(fake_model.requests_with("rl three")[-1])
    status = (await chat.say("rl", "/status", user="UADMIN")).text
    assert "profiles: 0 from" in status and "the file's last change was NOT taken" in status
    assert "profiles of this thread: default" in status


async def test_redaction_keeps_personal_data_from_the_model_and_says_so_once(
    make_slack: object, fake_model: FakeModel, tmp_path: Path
) -> None:
    profiles = write(
        tmp_path / "profiles.yaml",
        """
        default:
          redact:
            patterns: ['ACCT-\\d{8}']
        """,
    )
    slack: SlackHarness = await make_slack(profiles=profiles)  # type: ignore[operator]
    # Someone else's words earlier in the thread reach the model as its context.
    parent, _ = await slack.say("bob@example.com is where invoices go", mention=False,
                                user="U2", wait=False)  # fmt: skip
    await slack.say(
        "rd mail ada@example.com, call +1 555 123 4567, card 4111-1111-1111-1111, ACCT-12345678",
        thread_ts=parent,
    )
    body = fake_model.requests_with("rd mail")[-1]
    sent = json.dumps(body)
    for value in ("bob@example.com", "ada@example.com", "555 123 4567", "4111", "ACCT-1234"):
        assert value not in sent
    assert "invoices go" in sent and "[email removed]" in sent
    replies = slack.texts(parent)
    told = [text for text in replies if "keeps personal data from the model" in text]
    assert len(told) == 1 and "1 card number" in told[0] and "2 emails" in told[0]

    await slack.say("rd again: carol@example.com", thread_ts=parent)
    assert "carol@" not in json.dumps(fake_model.requests_with("rd again")[-1])
    assert len([t for t in slack.texts(parent) if "keeps personal data" in t]) == 1


async def test_text_attachments_are_redacted_and_images_left_out(
    make_chat: AppFactory, fake_model: FakeModel, tmp_path: Path
) -> None:
    from tests.test_turns import PNG

    profiles = write(tmp_path / "profiles.yaml", "default:\n  redact: {}\n")
    chat = await make_chat(profiles=profiles)
    sink = await chat.say(
        "ra",
        "ra what is in these?",
        files=(
            file("contacts.txt", "text/plain", b"the contact is dana@example.com"),
            file("dot.png", "image/png", PNG),
        ),
    )
    sent = json.dumps(fake_model.requests_with("ra what is in these?")[-1])
    assert "the contact is [email removed]" in sent and "dana@" not in sent
    assert "image/png" not in sent and "dot.png" not in sent
    (note,) = sink.notices
    assert "1 email, 1 image" in note


async def test_sighup_reads_the_profiles_file_again(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    profiles = write(tmp_path / "profiles.yaml", "default:\n  system_prompt: HUP-ONE\n")
    before = fake_slack.open_connections
    process = await start_bot(
        tmp_path, fake_model, cli_path, **fake_slack.env,
        THREADPILOT_DATA_DIR=str(tmp_path / "data"), THREADPILOT_PROFILES=str(profiles),
    )  # fmt: skip
    try:
        await fake_slack.wait_for(lambda: fake_slack.open_connections > before)
        channel = "CHUP"
        ts, _ = await say(fake_slack, channel, "hup first")
        await answers(fake_slack, channel, ts, 1)
        assert "HUP-ONE" in system_text(fake_model.requests_with("hup first")[-1])

        write(profiles, "default:\n  system_prompt: HUP-TWO\n")
        process.send_signal(signal.SIGHUP)
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while b"profiles reloaded" not in await process.stderr.readline():
                pass
        await say(fake_slack, channel, "hup second", thread_ts=ts)
        await answers(fake_slack, channel, ts, 2)
        assert "HUP-TWO" in system_text(fake_model.requests_with("hup second")[-1])
    finally:
        errors = await stop_bot(process)
    assert "Traceback" not in errors, errors


async def test_bash_cannot_write_to_a_read_only_working_directory(tmp_path: Path) -> None:
    sandbox = await Sandbox.find()
    (tmp_path / "notes.txt").write_text("kept")
    result = await sandbox.run("cat notes.txt; echo changed > notes.txt", tmp_path, 30, False)
    assert "kept" in result.output and "Read-only file system" in result.output
    assert result.exit_code != 0 and (tmp_path / "notes.txt").read_text() == "kept"
    await sandbox.run("echo changed > notes.txt", tmp_path, 30, True)
    assert (tmp_path / "notes.txt").read_text() == "changed\n"


async def test_a_thread_switches_among_the_models_its_profile_offers(
    make_slack: Any, fake_model: FakeModel, tmp_path: Path
) -> None:
    profiles = write(
        tmp_path / "profiles.yaml",
        "default:\n  model: m-one\n  models: [m-two]\n",
    )
    slack: SlackHarness = await make_slack(profiles=profiles)
    ts, _ = await slack.say("ms first")
    assert fake_model.requests_with("ms first")[-1]["model"] == "m-one"

    await slack.say("model", thread_ts=ts)
    assert "I answer with `m-one` here. This channel offers `m-one`, `m-two`" in slack.texts(ts)[-1]
    await slack.say("model m-three", thread_ts=ts)
    assert "does not offer `m-three`: it offers `m-one`, `m-two`" in slack.texts(ts)[-1]
    await slack.say("model m-two", thread_ts=ts)
    assert "Switched this thread to `m-two`" in slack.texts(ts)[-1]
    assert fake_model.requests_with("model") == []  # commands, not turns

    await slack.say("ms second", thread_ts=ts, mention=False)
    body = fake_model.requests_with("ms second")[-1]
    assert body["model"] == "m-two"  # the session resumed with it...
    assert [t for t in user_texts(body) if "ms " in t][-2:] == ["ms first", "ms second"]  # ...kept
    thread = await slack.app.store.thread(ThreadKey("slack", "T01", slack.channel, ts))
    assert thread is not None and thread.model == "m-two"
    shown = slack.app.profiles.resolve(thread.key, thread.model).explain()
    assert "model: m-two (from this thread)" in shown


async def test_discord_model_takes_its_choice_as_an_option(
    make_discord: Any, fake_model: FakeModel, tmp_path: Path
) -> None:
    profiles = write(tmp_path / "profiles.yaml", "default:\n  model: m-one\n  models: [m-two]\n")
    bot: DiscordHarness = await make_discord(profiles=profiles)
    question = await bot.fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> md first")
    await bot.dispatched(question.id)
    thread = await bot.thread_of(question)
    used = await bot.use("model", thread, {"value": "m-two"})
    (reply,) = bot.fake.responses(used)
    assert "Switched this thread to `m-two`" in reply.content
    second = await bot.fake.say(thread, f"<@{BOT_ID}> md second")
    await bot.dispatched(second.id)
    assert fake_model.requests_with("md second")[-1]["model"] == "m-two"


async def test_budgets_refuse_politely_count_tokens_and_reset_the_next_day(
    make_chat: AppFactory, fake_model: FakeModel, tmp_path: Path
) -> None:
    profiles = write(
        tmp_path / "profiles.yaml",
        """
        default:
          budgets:
            per_user: {turns: 2}
        profiles:
          tight:
            channels: [slack:CTIGHT]
            budgets:
              per_channel: {tokens: 10}
        """,
    )
    clock = FakeClock()  # 08:00 UTC
    chat = await make_chat(clock=clock, profiles=profiles, admins=frozenset({"slack:UADMIN"}))
    await chat.say("bd", "bd one")
    await chat.say("bd", "bd two")
    refused = await chat.say("bd", "bd three")
    assert refused.errors == [
        "You have used your 2 turns for today, so I can't answer this one. The budget "
        "resets at 00:00 UTC, in 16 h 0 min."
    ]
    assert fake_model.requests_with("bd three") == []
    assert (await chat.say("bd", "bd from Grace", user="U2")).text == "echo: bd from Grace"
    assert (await chat.say("bd", "/profile")).text.count("each person: 2 turns a day") == 1

    # Tokens are the model calls' own count: one turn spends the channel's ten.
    tight = ThreadKey("slack", "T01", "CTIGHT", "1")
    await chat.say(tight, "bd tight one")
    over = await chat.say(tight, "bd tight two", user="U3")
    assert over.errors[0].startswith("This channel has used its 10 model tokens for today")

    status = (await chat.say("bd", "/status", user="UADMIN")).text
    (line,) = [line for line in status.splitlines() if line.startswith("today's top spenders")]
    assert "slack:U1 3 turns" in line and "slack:U2 1 turns" in line
    metrics = chat.app.metrics.exposition().decode()
    assert 'threadpilot_profile_turns_total{profile="default"} 3.0' in metrics
    assert 'threadpilot_profile_turns_total{profile="tight"} 1.0' in metrics

    clock.advance(16 * 3600)  # midnight: a new day
    assert (await chat.say("bd", "bd four")).text == "echo: bd four"


async def test_a_profile_brings_its_own_model_provider(
    make_chat: AppFactory, fake_model: FakeModel, tmp_path: Path
) -> None:
    other = FakeModel()  # the team's own provider
    await other.start()
    try:
        key_file = tmp_path / "team-key"
        key_file.write_text("team-secret-key\n")
        profiles = write(
            tmp_path / "profiles.yaml",
            f"""
            profiles:
              team:
                channels: [slack:CTEAM]
                model: team-model
                provider:
                  base_url: {other.base_url}
                  api_key_file: {key_file}
                  wire_api: completions
            """,
        )
        chat = await make_chat(profiles=profiles)
        team = ThreadKey("slack", "T01", "CTEAM", "1")
        assert (await chat.say(team, "pv for the team")).text == "echo: pv for the team"
        (body,) = other.requests_with("pv for the team")
        assert (
            body["model"] == "team-model" and other.authorizations[-1] == "Bearer team-secret-key"
        )
        assert fake_model.requests_with("pv for the team") == []
        await chat.say("pv", "pv elsewhere")  # other channels keep the settings' provider
        assert fake_model.requests_with("pv elsewhere") and not other.requests_with("pv elsewhere")
        assert "provider: openai at " + other.base_url in (await chat.say(team, "/profile")).text
    finally:
        await other.stop()
