"""Pure units of the adapters: splitting long answers, pacing edits, Markdown to mrkdwn."""

from __future__ import annotations

import asyncio

import pytest

from adapters.live_reply import Pacer
from adapters.slack.events import mentions, strip_mentions
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.text import cut, honest_links, split_text

FENCE = "```python\n" + "\n".join(f"print({i})" for i in range(30)) + "\n```"


def fences_balanced(part: str) -> bool:
    return sum(line.strip().startswith("```") for line in part.split("\n")) % 2 == 0


def test_short_text_is_one_message_untouched() -> None:
    assert split_text("hello\n\n\nworld", 100) == ["hello\n\n\nworld"]


def test_split_at_paragraphs_and_never_inside_a_fence() -> None:
    text = "intro " * 10 + "\n\n" + FENCE + "\n\n" + "outro " * 10
    parts = split_text(text, 200)
    assert all(len(part) <= 200 for part in parts)
    assert all(fences_balanced(part) for part in parts)
    assert parts[0].startswith("intro") and parts[-1].rstrip().endswith("outro")
    # The code is all there, in order.
    code = "".join(p for p in parts if "print(" in p)
    assert [f"print({i})" in code for i in range(30)] == [True] * 30
    assert code.index("print(29)") > code.index("print(0)")


def test_a_fence_longer_than_a_message_is_fenced_again_in_each_part() -> None:
    parts = split_text(FENCE, 100)
    assert len(parts) > 2
    for part in parts:
        assert len(part) <= 100 and part.startswith("```python\n") and part.endswith("\n```")


def test_a_long_paragraph_breaks_at_spaces() -> None:
    parts = split_text("word " * 100, 50)
    assert all(len(p) <= 50 for p in parts)
    assert " ".join(parts).split() == ["word"] * 100


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic*", "*bold* and _italic_"),
        ("__bold__ and _italic_", "*bold* and _italic_"),
        ("~~gone~~", "~gone~"),
        ("# Title\n## Sub", "*Title*\n*Sub*"),
        ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
        ("1. first\n2. second", "1. first\n2. second"),
        (
            "see [the docs](https://example.com/a?b=1&c=2)",
            "see <https://example.com/a?b=1&c=2|the docs>",
        ),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("`**not bold**` here", "`**not bold**` here"),
        ("```python\nx = 1 ** 2  # *no*\n```", "```\nx = 1 ** 2  # *no*\n```"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("[https://a.example](https://b.example)", "<https://b.example|https://b.example>"),
    ],
)
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        ("[the docs](https://a.example/docs)", "[the docs](https://a.example/docs)"),
        ("[https://a.example/](https://a.example)", "[https://a.example/](https://a.example)"),
        (
            "[www.bank.example](https://evil.example)",
            "[https://evil.example](https://evil.example)",
        ),
        ("[x](https://a.example/><!here>)", "[x](https://a.example/%3E%3C!here%3E)"),
        ("`[https://a.example](https://b.example)`", "`[https://a.example](https://b.example)`"),
    ],
)
def test_a_link_shows_where_it_leads(markdown: str, shown: str) -> None:
    assert honest_links(markdown) == shown


async def test_pacer_flushes_at_most_once_per_interval_and_once_after_the_last_change() -> None:
    flushed: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def flush() -> None:
        flushed.append(loop.time())
        if len(flushed) == 2:
            done.set()

    pacer = Pacer(flush, interval=0.2)
    for _ in range(50):  # a burst of changes
        pacer.changed()
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 5)
    await pacer.settle()
    assert len(flushed) == 2 and flushed[1] - flushed[0] >= 0.2
    assert loop.time() - flushed[1] >= 0.2  # a final edit may follow now


def test_the_bots_mention_is_found_and_stripped_in_both_of_slacks_forms() -> None:
    for text in ("<@UBOT> hello", "<@UBOT|threadpilot> hello"):
        assert mentions(text, "UBOT") and strip_mentions(text, "UBOT") == "hello"
    assert not mentions("<@UBOTX> hello", "UBOT") and not mentions("@UBOT hello", "UBOT")


def test_a_text_still_being_written_is_cut_where_its_finished_form_is() -> None:
    text = "intro " * 30 + "\n\n" + FENCE + "\n\n" + "outro " * 30 + "\n\n" + FENCE
    finished = split_text(text, 120)
    for end in range(122, len(text)):  # each moment the growing text is past a message
        at = cut(text[:end], 120)
        assert at is not None and at.head == finished[0]
    prose = "\n\n".join(f"paragraph {i} " + "word " * 20 for i in range(12))
    assert "\n\n".join(split_text(prose, 300)) == prose  # cut only at paragraph breaks
