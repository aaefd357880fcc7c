"""What `threadpilot doctor` checks on Discord: the token logs in, the privileged intent the
settings ask for is on, the bot is in the servers DISCORD_GUILD_IDS names, and its
application commands are registered there (or globally)."""

from __future__ import annotations

import aiohttp
import discord
from discord import app_commands

from adapters.discord.adapter import point_at
from bot.commands import COMMANDS
from bot.config import Settings
from bot.doctor import Finding, ok, problem

# What the bot needs in a server: the invite URL asks for exactly these.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,  # the thread it is asked in
    attach_files=True,
    add_reactions=True,  # on a question that waits its turn
)


def invite_url(application_id: int | str) -> str:
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&scope=bot+applications.commands&permissions={INVITE_PERMISSIONS.value}"
    )


async def check_discord(settings: Settings) -> list[Finding]:
    if settings.discord_token is None:
        return []
    point_at(settings)
    client = discord.Client(intents=discord.Intents.none())
    try:
        try:
            await client.login(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            return [
                problem(
                    "discord",
                    "DISCORD_TOKEN was refused: copy it from the Developer "
                    "Portal -> your application -> Bot -> Reset Token",
                )
            ]
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            return [
                problem("discord", f"cannot reach Discord at {settings.discord_api_url} ({exc})")
            ]
        application = await client.application_info()
        findings = [ok("discord", f"DISCORD_TOKEN: logged in as {client.user}")]
        findings.append(_intent(settings, application.flags))
        in_guilds = {guild.id async for guild in client.fetch_guilds()}
        findings += [
            problem(
                "discord",
                f"the bot is not in the server {guild} (DISCORD_GUILD_IDS): "
                f"invite it with {invite_url(application.id)}",
            )
            for guild in settings.discord_guild_ids
            if guild not in in_guilds
        ]
        return findings + await _registered(client, settings)
    finally:
        await client.close()


async def _registered(client: discord.Client, settings: Settings) -> list[Finding]:
    """Whether Discord has every command of the catalogue where the bot registers them."""
    wanted = {"ask", *(c.name for c in COMMANDS), *(c.shortcut for c in COMMANDS if c.shortcut)}
    tree = app_commands.CommandTree(client)
    places: list[discord.Object | None] = [
        discord.Object(id=guild) for guild in settings.discord_guild_ids
    ] or [None]
    findings = []
    for guild in places:
        where = f"in the server {guild.id}" if guild else "globally"
        try:
            have = {command.name for command in await tree.fetch_commands(guild=guild)}
        except (discord.HTTPException, KeyError, TypeError, ValueError) as exc:
            findings.append(
                problem("discord", f"cannot read the commands registered {where} ({exc!r})")
            )
            continue
        missing = sorted(wanted - have)
        findings.append(
            problem(
                "discord",
                f"not registered {where}: {', '.join(missing)}; the bot registers its "
                "commands when it starts (and retries, saying why in its log and `status`)",
            )
            if missing
            else ok("discord", f"every command is registered {where}")
        )
    return findings


def _intent(settings: Settings, flags: discord.ApplicationFlags) -> Finding:
    if not settings.discord_message_content:
        return ok(
            "discord",
            "the Message Content intent is not asked for "
            "(THREADPILOT_DISCORD_MESSAGE_CONTENT=false): mentions and slash commands",
        )
    if flags.gateway_message_content or flags.gateway_message_content_limited:
        return ok("discord", "the Message Content intent is on")
    return problem(
        "discord",
        "THREADPILOT_DISCORD_MESSAGE_CONTENT=true but the Message Content intent is "
        "off: turn it on in the Developer Portal -> your application -> Bot -> Privileged "
        "Gateway Intents, or set THREADPILOT_DISCORD_MESSAGE_CONTENT=false",
    )
