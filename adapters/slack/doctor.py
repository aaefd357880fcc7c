"""What `threadpilot doctor` checks on Slack: the tokens work and the app has every scope the
adapter uses (deploy/slack-app-manifest.yml asks for exactly these)."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import api_error
from bot.config import Settings
from bot.doctor import Finding, ok, problem

# Bot token scope -> what the bot does with it.
REQUIRED_SCOPES: dict[str, str] = {
    "app_mentions:read": "hearing mentions",
    "assistant:write": "the status line in the assistant pane",
    "channels:history": "follow-ups in, and reading, public channel threads",
    "groups:history": "follow-ups in, and reading, private channel threads",
    "im:history": "direct messages",
    "mpim:history": "group direct messages",
    "chat:write": "answering",
    "commands": "slash commands and shortcuts",
    "files:read": "files people attach",
    "files:write": "very long answers, sent as a file",
    "reactions:write": "the 'working on it' reaction",
    "users:read": "knowing who wrote what in a thread",
}
_FIX_SCOPES = (
    "add it under OAuth & Permissions -> Bot Token Scopes (or recreate the app from "
    "deploy/slack-app-manifest.yml), then reinstall the app to the workspace"
)


async def check_slack(settings: Settings) -> list[Finding]:
    if settings.slack_bot_token is None:
        return []
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        return [
            problem(
                "slack",
                f"auth.test refused SLACK_BOT_TOKEN ({api_error(exc)}): copy the Bot "
                "User OAuth Token from OAuth & Permissions",
            )
        ]
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [problem("slack", f"cannot reach Slack at {settings.slack_api_url} ({exc})")]
    findings = [ok("slack", f"SLACK_BOT_TOKEN: {auth['user']} in the workspace {auth['team']}")]
    header = next((v for k, v in auth.headers.items() if k.lower() == "x-oauth-scopes"), "")
    granted = {scope.strip() for scope in str(header).split(",")}
    findings += [
        problem("slack", f"the app lacks the scope {scope} (for {why}): {_FIX_SCOPES}")
        for scope, why in REQUIRED_SCOPES.items()
        if scope not in granted
    ]
    if len(findings) == 1:
        findings.append(ok("slack", "every scope the bot uses is granted"))
    return findings + await _check_delivery(settings)


async def _check_delivery(settings: Settings) -> list[Finding]:
    """How events reach the bot: Socket Mode (SLACK_APP_TOKEN) or HTTP (the signing secret)."""
    if settings.slack_app_token is not None:
        app = AsyncWebClient(base_url=settings.slack_api_url)
        try:
            await app.apps_connections_open(app_token=settings.slack_app_token.get_secret_value())
        except SlackApiError as exc:
            return [
                problem(
                    "slack",
                    f"SLACK_APP_TOKEN was refused ({api_error(exc)}): generate an "
                    "app-level token with the connections:write scope under Basic "
                    "Information -> App-Level Tokens, and turn on Socket Mode",
                )
            ]
        return [ok("slack", "SLACK_APP_TOKEN: Socket Mode connections open")]
    if settings.slack_signing_secret is not None:
        return [
            ok(
                "slack",
                f"HTTP mode: Slack must reach /slack/events on port "
                f"{settings.http_port} (SLACK_SIGNING_SECRET set)",
            )
        ]
    return [
        problem(
            "slack",
            "neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET "
            "(HTTP mode) is set: Slack has no way to deliver events",
        )
    ]
