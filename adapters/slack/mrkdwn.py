"""Markdown, as models write it, to Slack's mrkdwn.

Code blocks and inline code pass through untouched (fence languages dropped: Slack shows
them as text). Outside code: headings become bold lines, **bold** *bold*, *italic* and
_italic_ _italic_, ~~strike~~ ~strike~, [text](url) <url|text>, bullets •, and &, <, >
are escaped as Slack requires.
"""

from __future__ import annotations

import re

from adapters.text import honest_link

_FENCED = re.compile(r"(^```[^\n]*\n.*?^```[ \t]*$|`[^`\n]+`)", re.M | re.S)
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.M)
_PLACEHOLDER = "\x00{}\x00"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _prose(text: str) -> str:
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        text, target = honest_link(match.group(1), match.group(2))
        links.append(f"<{target}|{_escape(text)}>")
        return _PLACEHOLDER.format(len(links) - 1)

    text = _LINK.sub(keep_link, text)
    text = _escape(text)
    text = _HEADING.sub(lambda m: f"\x01{m.group(1)}\x01", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    # Bold first, through a placeholder marker, so the italic rule does not see it.
    text = _BOLD.sub(lambda m: f"\x01{m.group(2)}\x01", text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = text.replace("\x01", "*")
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], text)


def _code(block: str) -> str:
    if block.startswith("```"):
        rest = block.partition("\n")[2]
        return "```\n" + rest  # Slack has no syntax highlighting: drop the language
    return block


def to_mrkdwn(markdown: str) -> str:
    parts = _FENCED.split(markdown)
    # split() with one group alternates prose and code.
    return "".join(_code(part) if i % 2 else _prose(part) for i, part in enumerate(parts))
