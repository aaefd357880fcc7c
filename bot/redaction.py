"""Redaction: personal data replaced before a prompt reaches the model.

A profile (bot/profiles.py) that redacts replaces e-mail addresses, phone numbers and
payment card numbers (by default all three) and its own patterns with a placeholder
naming what was there, in everything the model is sent: the message, the thread's
earlier messages, text attachments, the transcript a summary is written from.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, field_validator

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13 to 19 digits, in groups separated by single spaces or dashes; kept only if the Luhn
# checksum holds, so that order numbers and timestamps pass.
_CARD = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")
# International (+ and 7-15 digits) or national with separators, e.g. (555) 123-4567,
# 555-123-4567, 030 1234 5678; bare digit runs (ids, Slack timestamps) are not phones.
_PHONE = re.compile(
    r"(?<![\w.+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
    r"\d{3,4}[ .-]?\d{3,4}(?![\w.])"
    r"|(?<![\w.+])\+\d{7,15}(?![\w.])"
)


def removal_note(removed: Counter[str]) -> str:
    """What the thread is told, once, the first time something is removed."""
    found = ", ".join(
        f"{count} {kind}{'' if count == 1 else 's'}" for kind, count in sorted(removed.items())
    )
    return (
        "This channel's profile keeps personal data from the model: I removed what it names "
        f"({found}) from what I sent it, and will go on doing so in this thread without "
        "saying so each time. Images are left out, since nothing can be removed from them."
    )


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Redacted:
    text: str
    counts: Counter[str]  # what was replaced, by kind

    def __bool__(self) -> bool:
        return bool(self.counts)


class Redaction(BaseModel):
    """What a profile's `redact:` replaces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    emails: bool = True
    phones: bool = True
    cards: bool = True
    patterns: tuple[str, ...] = ()  # regular expressions of the profile's own

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return patterns

    def apply(self, text: str) -> Redacted:
        counts: Counter[str] = Counter()

        def replace(kind: str, pattern: re.Pattern[str], text: str) -> str:
            def one(match: re.Match[str]) -> str:
                if kind == "card number" and not _luhn(re.sub(r"\D", "", match[0])):
                    return match[0]
                counts[kind] += 1
                return f"[{kind} removed]"

            return pattern.sub(one, text)

        if self.emails:
            text = replace("email", _EMAIL, text)
        # Cards before phones: a card's digit groups would look like a phone number.
        if self.cards:
            text = replace("card number", _CARD, text)
        if self.phones:
            text = replace("phone number", _PHONE, text)
        for pattern in self.patterns:
            text = replace("redacted text", re.compile(pattern), text)
        return Redacted(text, counts)
