"""Text for chat messages: long answers split into messages of a platform's size, at
paragraph boundaries and never inside a fenced code block; and links that show where
they lead."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class Cut:
    """Where the first message of a long text ends: `head` is that message (a fence it
    ends inside closed), and the rest is `reopen + text[resume:]` (that fence opened
    again, with its language)."""

    head: str
    resume: int
    reopen: str = ""


def _line_cut(text: str, start: int, end: int) -> int:
    """Where to break `text` at or before `end` (and after `start`): the last line break,
    else the last space, else at `end`."""
    for sep in ("\n", " "):
        at = text.rfind(sep, start + 1, end + 1)
        if at > start:
            return at
    return end


def _scan(text: str, limit: int) -> tuple[int, tuple[str, str, int] | None]:
    """Of the lines of `text` that end by `limit + 1`: where the last paragraph break
    outside a code fence is (0: none), and the fence still open after them (its marker,
    opening line, and where its content starts), if one is."""
    paragraph = 0
    fence: tuple[str, str, int] | None = None
    start = 0
    while (end := text.find("\n", start)) != -1 and end <= limit + 1:
        line = text[start:end]
        match = _FENCE.match(line)
        if fence is None and match:
            fence = (match.group(1), line.strip(), end + 1)
        elif fence is not None and match and match.group(1) == fence[0]:
            if not line.strip().strip(fence[0][0]):
                fence = None
        elif fence is None and not line and start > 1 and text[start - 2] != "\n":
            paragraph = start - 1
        start = end + 1
    return paragraph, fence


def cut(text: str, limit: int) -> Cut | None:
    """The first message of `text` in messages of at most `limit` characters, or None
    when it fits in one: at the last paragraph break outside a code fence; failing that
    (a paragraph or fence longer than a message), at a line break, else a space. A fence
    cut in two is closed and opened again.

    Only the first `limit + 2` characters decide, so a text still being written is cut
    where its finished form will be.
    """
    if len(text) <= limit:
        return None
    paragraph, fence = _scan(text, limit)
    if paragraph:
        return Cut(text[:paragraph], paragraph + 2)
    if fence is not None:
        marker, opening, content = fence
        at = _line_cut(text, content - 1, limit - len(marker) - 1)
        if at >= content:
            resume = at + 1 if text[at] in "\n " else at
            return Cut(f"{text[:at]}\n{marker}", resume, f"{opening}\n")
    at = _line_cut(text, 0, limit)
    return Cut(text[:at], at + 1 if text[at] in "\n " else at)


def settled(text: str, limit: int) -> int | None:
    """How much of `text`, still being written, its first message (of at most `limit`
    characters) keeps whatever comes next: up to its last paragraph break outside a code
    fence, since `cut` cuts there or later. None when that is not known yet (no such
    break): the cut may come anywhere."""
    paragraph, _ = _scan(text, limit)
    return paragraph or None


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into messages of at most `limit` characters, each `cut` from the
    rest: at paragraph breaks, and a fenced code block longer than a message split into
    blocks that are each fenced again."""
    messages: list[str] = []
    while (at := cut(text, limit)) is not None:
        messages.append(at.head)
        text = at.reopen + text[at.resume :]
    return [*messages, text] if text else messages


# Markdown links, outside code: [text](target).
_CODE = re.compile(r"(^```[^\n]*\n.*?^```[ \t]*$|`[^`\n]+`)", re.M | re.S)
_MD_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\n]*)\)")
_ADDRESS = re.compile(r"(?:https?://|www\.)\S+", re.I)
_MARKUP_IN_TARGET = re.compile(r"[<>|\s]")


def honest_link(text: str, target: str) -> tuple[str, str]:
    """A link that cannot lie: characters a chat would read as markup are escaped in its
    target, and text that is itself an address other than the target becomes the target."""
    target = _MARKUP_IN_TARGET.sub(lambda c: urllib.parse.quote(c.group()), target.strip())
    shown = text.strip()
    if _ADDRESS.fullmatch(shown) and shown.rstrip("/") != target.rstrip("/"):
        text = target
    return text, target


def honest_links(markdown: str) -> str:
    """`markdown` with every link outside code made honest (see `honest_link`)."""

    def fix(match: re.Match[str]) -> str:
        text, target = honest_link(match.group(1), match.group(2))
        return f"[{text}]({target})"

    parts = _CODE.split(markdown)  # prose and code alternate
    return "".join(part if i % 2 else _MD_LINK.sub(fix, part) for i, part in enumerate(parts))
