"""The Slack adapter: slack-bolt events in, reply streams out as Slack messages."""

from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
