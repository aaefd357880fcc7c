"""Commands: the catalogue of in-thread commands, the one place each is declared.

Every form a command takes derives from its entry: Slack's mention words (`@bot reset`),
`/threadpilot NAME`, slash commands and message shortcuts; Discord's slash commands and
message commands; the help text; and the Slack app manifest, which a test holds to this
catalogue. What a command does is its handler in bot/command_handlers.py. Adding a
command is an entry here and a handler there.

Commands never call the model, except `summarize`, which is a model call on a session
of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.inbound import Inbound


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str  # one line: the help text, Discord's description, Slack's shortcut hint
    admin_only: bool = False
    private: bool = False  # only the asker sees the answer
    needs_thread: bool = True  # used outside a thread, it only says where it works
    # It works on the bot's conversation in the thread: where the bot has not talked, it
    # only says so (and the bot does not become part of the thread by it).
    needs_conversation: bool = False
    takes_target: bool = False  # used on a message, it acts at that message
    shortcut: str | None = None  # label of its message action (Slack shortcut, Discord app)
    # A Slack slash command of its own, besides `/threadpilot NAME`. Slack does not tell a
    # slash command which thread it was used in, so in-thread ones only say where to go.
    slack_slash: bool = False
    # What its optional argument is, if it takes one: Discord shows it as an option, and
    # on Slack the mention form may carry it (`@bot model gpt-5`).
    argument: str | None = None

    @property
    def description(self) -> str:
        """The summary as a sentence of its own (Discord's command list, Slack's menus)."""
        return self.summary[:1].upper() + self.summary[1:]


COMMANDS = (
    Command(
        "reset",
        "forget this conversation and start afresh",
        needs_conversation=True,
        shortcut="Reset this thread",
        slack_slash=True,
    ),
    Command(
        "branch",
        "copy this conversation (up to a message, if you pick one) into a new thread",
        takes_target=True,
        needs_conversation=True,
        shortcut="Branch from here",
        slack_slash=True,
    ),
    Command(
        "restore",
        "undo the last reset (yours, or a summary reset of mine)",
        needs_conversation=True,
    ),
    Command(
        "summarize",
        "sum up this thread: decisions, open questions, who owes what",
        shortcut="Summarize this thread",
    ),
    Command(
        "model",
        "which model answers here; `model NAME` switches this thread to another its channel offers",
        argument="the model to switch to (leave out to list them)",
    ),
    Command(
        "profile",
        "which profile applies here, and what the agent is by it (model, tools, directory)",
        private=True,
    ),
    Command(
        "status",
        "the bot's health (admins only)",
        admin_only=True,
        private=True,
        needs_thread=False,
    ),
    Command("help", "what I do, and my commands", private=True, needs_thread=False),
)
BY_NAME = {command.name: command for command in COMMANDS}


def parse(inbound: Inbound) -> tuple[Command, str] | None:
    """The command an inbound message asks for, with its arguments, if any.

    Adapters set `Inbound.command` for their platform's command forms; text starting with
    `/name` is a command too, but only for known names, so that "/etc/hosts is empty"
    still reaches the agent.
    """
    if inbound.command is not None:
        name, args = inbound.command, inbound.text
    elif inbound.text.startswith("/"):
        name, _, args = inbound.text[1:].partition(" ")
    else:
        return None
    command = BY_NAME.get(name.strip().lower())
    return (command, args.strip()) if command else None
