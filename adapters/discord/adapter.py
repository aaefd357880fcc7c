"""DiscordAdapter: a discord.py Client with application commands, wired to the router.

- The slash command `/ask`, and every command of the catalogue (bot/commands.py) as a
  slash command, and as a message command where it has a message action. Every
  interaction is deferred first thing, well inside Discord's 3 seconds, and then answered
  by editing that response and following up.
- Every message of a conversation (a thread, a DM), and every message that mentions the
  bot, goes to the router, which decides whether it is for the bot. A mention it answers
  in a channel gets a thread started from that message. With the privileged
  MESSAGE_CONTENT intent off (THREADPILOT_DISCORD_MESSAGE_CONTENT=false) Discord only
  shows the bot messages that mention it, so then mentions and slash commands are the
  way in.
- Nothing the bot posts can ping a crowd: every message it creates or edits allows no
  mentions at all.
- DISCORD_API_URL and DISCORD_GATEWAY_URL point discord.py elsewhere (proxies, tests);
  commands are synced to DISCORD_GUILD_IDS at once, or globally (which takes a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands

from adapters.discord.cards import card_content, card_view, decision
from adapters.discord.events import files_of, key_of, started_key, strip_mentions, thread_name
from adapters.discord.history import DiscordThread
from adapters.discord.sink import (
    ChannelSurface,
    DiscordSink,
    InteractionSurface,
    Messageable,
    ThreadStart,
)
from bot.commands import BY_NAME, COMMANDS, Command
from bot.config import Settings
from bot.errors import CannotConnect
from bot.inbound import Dispatcher, Inbound
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 60
_SYNC_RETRY_S = (5.0, 15.0, 60.0, 300.0)
CANNOT_ANSWER_HERE = "I can't answer in this channel."
# Discord sent a command the bot does not have in that form: the registration is stale.
OUT_OF_DATE_COMMAND = (
    "I don't know that command in this form; my commands may have just been updated. "
    "Please try again in a minute."
)
COMMAND_FAILED = "Sorry, something went wrong on my side with that command. Please try again."


def point_at(settings: Settings) -> None:
    """Aim discord.py's REST and gateway at the configured URLs (process-wide settings)."""
    discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class DiscordAdapter:
    name = "discord"

    def __init__(
        self,
        router: Dispatcher,
        settings: Settings,
        *,
        edit_interval_s: float = 1.0,
        guild_ready_timeout: float = 2.0,
        sync_retry_s: Sequence[float] = _SYNC_RETRY_S,
    ) -> None:
        if settings.discord_token is None:
            raise ValueError("DISCORD_TOKEN is not set")
        self._router = router
        self._settings = settings
        self._edit_interval_s = edit_interval_s
        point_at(settings)
        discord.VoiceClient.warn_nacl = False  # no voice here: no warning about its library
        intents = discord.Intents.none()
        intents.guilds = True  # channels and threads
        intents.guild_messages = True  # messages in servers (content only when mentioned)
        intents.dm_messages = True  # DMs (always with content)
        intents.message_content = settings.discord_message_content  # privileged
        common: dict[str, Any] = {
            "intents": intents,
            "guild_ready_timeout": guild_ready_timeout,
            # The default of every message the bot creates or edits, webhooks included.
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        # Replicas: Discord sends each server's events to the shard it falls in
        # ((server id >> 22) % shard count; DMs to shard 0), and a replica connects its own.
        if settings.discord_shard_ids:
            common["shard_ids"] = list(settings.discord_shard_ids)
        self.client = (
            discord.AutoShardedClient(shard_count=settings.discord_shard_count, **common)
            if settings.discord_shard_count
            else discord.Client(**common)
        )
        self.tree = app_commands.CommandTree(self.client)
        self.tree.error(self._on_command_error)
        self._register_commands()
        self.client.event(self.on_message)
        self.client.event(self.on_interaction)
        self._connection: asyncio.Task[None] | None = None
        self._sync_retry_s = sync_retry_s
        self._syncing: asyncio.Task[None] | None = None
        self.commands_synced = asyncio.Event()
        self.trouble: str | None = None

    @property
    def connected(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

    async def start(self) -> None:
        """Log in and connect to the gateway; CannotConnect if Discord refuses the token
        or cannot be reached."""
        assert self._settings.discord_token is not None
        try:
            await self.client.login(self._settings.discord_token.get_secret_value())
            self._connection = asyncio.create_task(self.client.connect(reconnect=True))
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                await self.client.wait_until_ready()
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.stop()
            raise CannotConnect(
                f"could not connect to Discord ({exc or type(exc).__name__}); "
                "`threadpilot doctor` checks the token"
            ) from None
        # Mentions and messages are served meanwhile, whatever the sync runs into.
        self._syncing = asyncio.create_task(self._sync_until_done())
        log.info("discord: connected as %s", self.client.user)

    async def stop(self) -> None:
        if self._syncing is not None:
            self._syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncing
        await self.client.close()
        if self._connection is not None:
            # A sharded client's connect() would wait on for its shards' next event.
            self._connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connection

    async def _sync_until_done(self) -> None:
        """Register the application commands; on failure, say so and try again later."""
        for attempt in itertools.count():
            try:
                await self._sync_commands()
            except Exception as exc:  # discord.py raises whatever a bad answer makes it
                wait = self._sync_retry_s[min(attempt, len(self._sync_retry_s) - 1)]
                self.trouble = (
                    f"slash commands not registered ({type(exc).__name__}: {exc}); "
                    f"trying again in {wait:g}s"
                )
                log.warning("discord: %s", self.trouble, exc_info=exc)
                await asyncio.sleep(wait)
            else:
                self.trouble = None
                self.commands_synced.set()
                log.info("discord: slash commands registered")
                return

    async def _sync_commands(self) -> None:
        guilds = self._settings.discord_guild_ids
        for guild_id in guilds:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        if not guilds:
            await self.tree.sync()

    def sink(self, key: ThreadKey) -> DiscordSink:
        channel = self.client.get_channel(int(key.thread))
        if not isinstance(channel, Messageable):
            raise LookupError(f"no Discord channel {key.thread} to post in")
        return self._sink(ChannelSurface(channel), channel)

    def _sink(
        self,
        surface: ChannelSurface | InteractionSurface,
        channel: Messageable,
        question: discord.Message | None = None,
    ) -> DiscordSink:
        return DiscordSink(
            surface, channel, self._edit_interval_s, question=self._with_me(question)
        )

    def _with_me(
        self, question: discord.Message | None
    ) -> tuple[discord.Message, discord.abc.Snowflake] | None:
        me = self.client.user
        return (question, me) if question is not None and me is not None else None

    def _reader(
        self, channel: Messageable, position: int, speaker: str, **how: Any
    ) -> DiscordThread:
        me = self.client.user
        assert me is not None
        reads = self._settings.discord_message_content
        return DiscordThread(channel, str(position), speaker, me.id, reads, **how)

    # --- messages -----------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """Every message of a conversation (a thread, a DM), and every message that
        mentions the bot, goes to the router; it decides which are for the bot."""
        me = self.client.user
        if (
            me is None
            or message.author.id == me.id
            or message.type not in (discord.MessageType.default, discord.MessageType.reply)
        ):
            return
        addressed = me in message.mentions
        channel = message.channel
        text = strip_mentions(message.content, me.id)
        speaker = message.author.display_name
        if isinstance(channel, discord.Thread | discord.DMChannel):
            key = key_of(channel)
            reader = self._reader(channel, message.id, speaker)
            sink = self._sink(ChannelSurface(channel), channel, question=message)
        elif isinstance(channel, discord.TextChannel) and addressed:
            # Answered in a thread started from the message, once the core answers it,
            # after the messages it replies to; a refusal is a reply, and opens none.
            key = started_key(channel, message.id)
            reader = self._reader(channel, message.id, speaker, origin=message)

            async def open_thread(name: str = thread_name(text)) -> discord.Thread:
                return await message.create_thread(name=name)

            async def decline(said: str) -> str:
                return str((await message.reply(said)).id)

            sink = DiscordSink.starting(
                ThreadStart(open_thread, decline), ChannelSurface(channel), channel,
                self._edit_interval_s, question=(message, me),
            )  # fmt: skip
        else:
            return  # a channel message not for the bot: no conversation
        assert key is not None
        inbound = Inbound(
            event_id=str(message.id),
            key=key,
            user_id=str(message.author.id),
            text=text,
            message_ref=str(message.id),
            files=files_of(message),
            addressed=addressed,
            in_dm=isinstance(channel, discord.DMChannel),
            from_bot=message.author.bot,
            thread=reader,
        )
        await self._router.dispatch(inbound, sink)

    # --- application commands -----------------------------------------------------------

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A button of an approval card (commands go to the command tree): the core
        decides; the card shows the outcome, or the person who pressed gets a word only
        they see."""
        pressed = decision(interaction)
        if pressed is None:
            return
        decided = await self._router.decide(pressed)
        if decided.private is not None:
            await interaction.response.send_message(decided.private, ephemeral=True)
            if decided.card is not None and interaction.message is not None:
                await interaction.message.edit(
                    content=card_content(decided.card), view=card_view(decided.card)
                )
        elif decided.card is not None:
            await interaction.response.edit_message(
                content=card_content(decided.card), view=card_view(decided.card)
            )

    def _register_commands(self) -> None:
        """`/ask`, and every command of the catalogue: a slash command each, and a message
        command for those with a message action."""
        everywhere = app_commands.AppCommandContext(guild=True, dm_channel=True)
        self.tree.add_command(
            app_commands.Command(
                name="ask",
                description="Ask the agent; in a channel, this starts a thread",
                callback=self._ask,
                allowed_contexts=everywhere,
            )
        )
        for command in COMMANDS:
            self.tree.add_command(
                app_commands.Command(
                    name=command.name,
                    description=command.description,
                    callback=self._with_argument(command)
                    if command.argument
                    else self._slash_command,
                    allowed_contexts=everywhere,
                )
            )
            if command.shortcut:
                self.tree.add_command(
                    app_commands.ContextMenu(
                        name=command.shortcut,
                        callback=self._message_command(command),
                        allowed_contexts=app_commands.AppCommandContext(guild=True),
                    )
                )

    @app_commands.describe(prompt="What to ask")
    async def _ask(self, interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        channel = interaction.channel
        speaker = interaction.user.display_name
        surface = InteractionSurface(interaction)
        if isinstance(channel, discord.TextChannel):
            # In a channel: the answer gets a thread of its own, started from this
            # response once the core answers; a refusal is the response, and opens none.
            response = await interaction.original_response()

            async def open_thread() -> discord.Thread:
                await interaction.edit_original_response(
                    content=f"**{speaker}** asked: {prompt[:1800]}"
                )
                return await response.create_thread(name=thread_name(prompt))

            key: ThreadKey | None = started_key(channel, response.id)
            reader = self._reader(channel, interaction.id, speaker, new=True)
            start = ThreadStart(open_thread, surface.open)
            sink = DiscordSink.starting(start, surface, channel, self._edit_interval_s)
        else:
            key = key_of(channel)
            if key is None or not isinstance(channel, Messageable):
                await interaction.edit_original_response(content=CANNOT_ANSWER_HERE)
                return
            reader = self._reader(channel, interaction.id, speaker)
            sink = self._sink(surface, channel)
        inbound = Inbound(
            event_id=str(interaction.id),
            key=key,
            user_id=str(interaction.user.id),
            text=prompt,
            in_dm=isinstance(channel, discord.DMChannel),
            thread=reader,
        )
        await self._router.dispatch(inbound, sink)

    async def _slash_command(self, interaction: discord.Interaction) -> None:
        assert interaction.command is not None
        await self._run_command(interaction, BY_NAME[interaction.command.name])

    def _with_argument(
        self, command: Command
    ) -> Callable[[discord.Interaction, str | None], Coroutine[Any, Any, None]]:
        """The callback of a slash command with an option: its catalogue argument."""

        async def run(interaction: discord.Interaction, value: str | None = None) -> None:
            await self._run_command(interaction, command, args=value or "")

        return app_commands.describe(value=command.argument or "")(run)

    def _message_command(
        self, command: Command
    ) -> Callable[[discord.Interaction, discord.Message], Coroutine[Any, Any, None]]:
        async def used_on(interaction: discord.Interaction, message: discord.Message) -> None:
            target = str(message.id) if command.takes_target else None
            await self._run_command(interaction, command, target_ref=target)

        return used_on

    async def _run_command(
        self,
        interaction: discord.Interaction,
        command: Command,
        target_ref: str | None = None,
        args: str = "",
    ) -> None:
        private = command.private or key_of(interaction.channel) is None
        await interaction.response.defer(ephemeral=private, thinking=True)
        channel = interaction.channel
        if not isinstance(channel, Messageable):
            await interaction.edit_original_response(content=CANNOT_ANSWER_HERE)
            return
        key = key_of(channel)
        inbound = Inbound(
            event_id=str(interaction.id),
            key=key,
            platform="discord",
            user_id=str(interaction.user.id),
            text=args,
            command=command.name,
            target_ref=target_ref,
            in_dm=isinstance(channel, discord.DMChannel),
            thread=(
                self._reader(channel, interaction.id, interaction.user.display_name)
                if key is not None
                else None
            ),
        )
        surface = InteractionSurface(interaction, private=private)
        await self._router.dispatch(inbound, self._sink(surface, channel))

    async def _on_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Answer what discord.py could not run, instead of leaving "did not respond"."""
        stale = (
            app_commands.CommandNotFound,
            app_commands.CommandSignatureMismatch,
            app_commands.TransformerError,
        )
        if isinstance(error, stale):
            log.info("a command from an out-of-date registration: %s", error)
            text = OUT_OF_DATE_COMMAND
        else:
            log.error("command %s failed", interaction.command, exc_info=error)
            text = COMMAND_FAILED
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(content=text)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not answer a failed command: %s", exc)
