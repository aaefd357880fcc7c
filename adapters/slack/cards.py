"""Approval cards on Slack (bot/approvals.py): Block Kit with a button per choice, and the
`block_actions` payload a press sends, as the core's Decision.

A button's `action_id` is `approval_<choice>` and its `value` the approval's id, so a card
stays answerable however long it waits and across restarts: nothing about it is kept in
memory here.
"""

from __future__ import annotations

import re
from typing import Any

from bot.inbound import Decision
from bot.replies import APPROVAL_CHOICES, ApprovalCard

ACTION = re.compile(r"approval_(once|thread|deny)")
_STYLES = {"once": "primary", "deny": "danger"}


def _escaped(text: str) -> str:
    """The agent's words as mrkdwn shows them, not as Slack markup (mentions, links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def card_message(card: ApprovalCard) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments showing `card`."""
    asked = f":lock: I want to {_escaped(card.action)} (for <@{card.asker}>). May I?"
    detail = _escaped(card.detail).replace("```", "` ` `")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": asked}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{detail}```"}},
    ]
    if card.outcome is None:
        blocks.append(
            {
                "type": "actions",
                "block_id": "approval",
                "elements": [
                    {
                        "type": "button",
                        "action_id": f"approval_{choice}",
                        "value": card.approval_id,
                        "text": {"type": "plain_text", "text": label},
                        **({"style": _STYLES[choice]} if choice in _STYLES else {}),
                    }
                    for choice, label in APPROVAL_CHOICES
                ],
            }
        )
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": card.outcome}]})
    return {"text": f"{asked} {card.outcome or ''}".strip(), "blocks": blocks}


def decision(body: dict[str, Any]) -> Decision | None:
    """The decision a `block_actions` payload carries; None if it is not a well-formed
    press of an approval button."""
    try:
        (action,) = body["actions"]
        choice = ACTION.fullmatch(action["action_id"])
        approval_id, user_id = action["value"], body["user"]["id"]
    except (KeyError, TypeError, ValueError):
        return None
    if choice is None or not isinstance(approval_id, str) or not isinstance(user_id, str):
        return None
    return Decision(approval_id, "slack", user_id, choice[1])  # type: ignore[arg-type]
