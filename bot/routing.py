"""Routing: the one rule deciding which messages the bot answers.

Adapters forward every message of a conversation (a thread or a DM), and every message
that addresses the bot, with plain facts; `route` decides, the same for every platform:

- ANSWER: a turn (or a command) for the agent;
- CONTEXT: part of a conversation the bot is in, but not for it: the agent reads it with
  its next turn there (bot/thread_context.py);
- IGNORE: people talking where the bot is not part of the conversation.
"""

from __future__ import annotations

from enum import Enum

from bot.config import Settings
from bot.inbound import Inbound


class Route(Enum):
    ANSWER = "answer"
    CONTEXT = "context"
    IGNORE = "ignore"


def route(inbound: Inbound, known: bool, settings: Settings) -> Route:
    """What to do with `inbound`; `known`: the bot has taken part in its thread."""
    if inbound.from_bot:  # another bot: never answered, so two bots cannot talk forever
        return Route.CONTEXT if known else Route.IGNORE
    if inbound.addressed or inbound.in_dm:
        return Route.ANSWER
    if not known:
        return Route.IGNORE
    if not (inbound.text.strip() or inbound.files):
        # Nothing to answer: on Discord without the Message Content intent, others'
        # messages come blank.
        return Route.CONTEXT
    if inbound.platform == "slack" and settings.slack_require_mention:
        return Route.CONTEXT
    return Route.ANSWER
