"""Text for chat messages: long answers split into messages of a platform's size, at
paragraph boundaries and never inside a fenced code block; and links that show where
they lead."""

from __future__ import annotations

import re
import urllib.parse

_FENCE = re.compile(r"^\s*(```|~~~)")


def _blocks(text: str) -> list[tuple[str, bool]]:
    """Paragraphs and fenced code blocks, in order, each with whether it is a fence."""
    blocks: list[tuple[str, bool]] = []
    lines: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if fence is not None:
            lines.append(line)
            if match and match.group(1) == fence and not line.strip().strip(fence[0]):
                blocks.append(("\n".join(lines), True))
                lines, fence = [], None
        elif match:
            if lines:
                blocks.append(("\n".join(lines), False))
            lines, fence = [line], match.group(1)
        elif line.strip():
            lines.append(line)
        elif lines:
            blocks.append(("\n".join(lines), False))
            lines = []
    if lines:
        blocks.append(("\n".join(lines), fence is not None))
    return blocks


def _hard_split(text: str, limit: int) -> list[str]:
    """Split a paragraph at line breaks, else spaces, else anywhere."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n ") if text[cut : cut + 1] in ("\n", " ") else text[cut:]
    return [*pieces, text] if text else pieces


def _split_fence(block: str, limit: int) -> list[str]:
    """A code block too long for one message: several blocks, each fenced again."""
    first, *rest = block.split("\n")
    closing = rest.pop() if rest and _FENCE.match(rest[-1]) else first.strip()[:3]
    room = limit - len(first) - len(closing) - 2
    pieces = _hard_split("\n".join(rest), max(room, 1))
    return [f"{first}\n{piece}\n{closing}" for piece in pieces]


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into messages of at most `limit` characters, at paragraph boundaries.

    A fenced code block is never cut: it moves whole to the next message, or, when it is
    longer than a message, is split into several blocks that are each fenced again.
    """
    if len(text) <= limit:
        return [text]
    messages: list[str] = []
    current = ""
    for block, is_fence in _blocks(text):
        pieces = [block]
        if len(block) > limit:
            pieces = _split_fence(block, limit) if is_fence else _hard_split(block, limit)
        for piece in pieces:
            candidate = f"{current}\n\n{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                messages.append(current)
                current = piece
    if current:
        messages.append(current)
    return messages


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
