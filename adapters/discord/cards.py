"""Approval cards on Discord (bot/approvals.py): a message with a button per choice, and
the component interaction a press sends, as the core's Decision.

A button's `custom_id` is `approval:<choice>:<approval id>`, so a card stays answerable
however long it waits and across restarts: discord.py keeps no view of it in memory.
"""

from __future__ import annotations

import re

import discord

from bot.inbound import Decision
from bot.replies import APPROVAL_CHOICES, ApprovalCard

_CUSTOM_ID = re.compile(r"approval:(once|thread|deny):([A-Za-z0-9_-]{1,64})")
_STYLES = {"once": discord.ButtonStyle.success, "deny": discord.ButtonStyle.danger}


def card_content(card: ApprovalCard) -> str:
    detail = card.detail.replace("```", "` ` `")
    text = f"🔒 I want to {card.action} (for <@{card.asker}>). May I?\n```\n{detail}\n```"
    return f"{text}\n{card.outcome}" if card.outcome else text


def card_view(card: ApprovalCard) -> discord.ui.View | None:
    """The buttons of an open card; None once it is decided."""
    if card.outcome is not None:
        return None
    view = discord.ui.View(timeout=None)
    for choice, label in APPROVAL_CHOICES:
        view.add_item(
            discord.ui.Button(
                label=label,
                custom_id=f"approval:{choice}:{card.approval_id}",
                style=_STYLES.get(choice, discord.ButtonStyle.secondary),
            )
        )
    return view


def decision(interaction: discord.Interaction) -> Decision | None:
    """The decision a button press carries; None if it is not one of an approval card."""
    if interaction.type is not discord.InteractionType.component or interaction.data is None:
        return None
    pressed = _CUSTOM_ID.fullmatch(str(interaction.data.get("custom_id", "")))
    if pressed is None:
        return None
    choice = pressed[1]
    return Decision(pressed[2], "discord", str(interaction.user.id), choice)  # type: ignore[arg-type]
