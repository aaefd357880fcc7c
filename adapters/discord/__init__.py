"""The Discord adapter: discord.py gateway events and interactions in, reply streams out."""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
