"""MCP servers of a profile (bot/mcp.py): a tiny stdio server of the tests' own
(tests/mcp_server.py) started by the real runtime, its tool used under approval, and a
server that fails to start told in the thread, `status` and `doctor`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.doctor import check_mcp, diagnose
from bot.inbound import Decision
from tests.conftest import AppFactory, RecordingSink, make_settings
from tests.fake_model import FakeModel, Reply, ToolCall
from tests.test_approvals import tool_result

SERVER = Path(__file__).resolve().parent / "mcp_server.py"


def facts_profile(tmp_path: Path, *, broken: bool = False) -> tuple[Path, Path]:
    """Profiles giving every thread the facts server, its tool only with approval; the
    file, and where the server notes each call it gets."""
    calls = tmp_path / "calls.txt"
    args = f"[{SERVER}{', --broken' if broken else ''}]"
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "default:\n"
        "  ask: [facts-lookup]\n"
        "  mcp_servers:\n"
        "    facts:\n"
        f"      command: {sys.executable}\n"
        f"      args: {args}\n"
        f"      env: {{MCP_CALLS: {calls}}}\n"
    )
    return path, calls


async def test_an_mcp_tool_is_used_once_approved_and_not_when_denied(
    make_chat: AppFactory, fake_model: FakeModel, tmp_path: Path
) -> None:
    path, calls = facts_profile(tmp_path)
    chat = await make_chat(profiles=path)
    lookup = Reply(tool_calls=[ToolCall("facts-lookup", {"topic": "launch"})])
    for choice in ("deny", "once"):
        key = chat.key(f"mc-{choice}")
        question = f"mc {choice}: when is the launch?"
        fake_model.script(question, lookup)
        asking = asyncio.create_task(chat.say(key, question))
        posted = chat.platform.sink(key)
        async with asyncio.timeout(30):
            await posted.card_shown.wait()
        (card,) = posted.cards.values()
        assert card.action == "use facts-lookup" and '"topic": "launch"' in card.detail
        await chat.app.router.decide(Decision(card.approval_id, "slack", "U1", choice))
        await asking
        result = tool_result(fake_model, question)
        if choice == "deny":
            assert "Tuesday" not in result and not calls.exists()  # never reached the server
        else:
            assert "The launch is on Tuesday." in result
            assert calls.read_text() == "launch\n"
    assert "facts: connected" in "\n".join(chat.app.sessions.mcp.lines())


async def test_an_mcp_server_that_fails_is_told_once_and_shown_to_admins(
    make_chat: AppFactory, fake_model: FakeModel, tmp_path: Path
) -> None:
    path, _ = facts_profile(tmp_path, broken=True)
    chat = await make_chat(profiles=path, admins=frozenset({"slack:UADMIN"}))
    key = chat.key("mc-broken")
    await chat.say(key, "mc first")
    posted = chat.platform.sink(key)
    told = await _told(posted, "failed to start")
    assert "`facts`" in told and "cannot open the facts database" in told
    await chat.say(key, "mc second")
    assert len([n for n in posted.notices if "failed to start" in n]) == 1

    status = (await chat.say(key, "/status", user="UADMIN")).text
    assert "facts: failed (MCP server process exited" in status

    settings = make_settings(tmp_path, fake_model.base_url, profiles=path)
    (finding,) = await diagnose(settings, [check_mcp])
    assert not finding.ok and "cannot open the facts database" in finding.text
    (tmp_path / "ok").mkdir()
    working, _ = facts_profile(tmp_path / "ok")
    settings = make_settings(tmp_path, fake_model.base_url, profiles=working)
    (finding,) = await diagnose(settings, [check_mcp])
    assert finding.ok and "facts:" in finding.text


async def _told(sink: RecordingSink, words: str) -> str:
    """The thread's note with `words`, once it has been posted (it is told apart from
    the turn, as the server's state comes in)."""
    async with asyncio.timeout(30):
        while True:
            sink.done.clear()
            found = [notice for notice in sink.notices if words in notice]
            if found:
                return found[0]
            await sink.done.wait()
