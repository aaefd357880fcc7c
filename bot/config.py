"""Settings: the configuration contract of DESIGN.md, read from the environment and `.env`."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.errors import ConfigError
from bot.tool_policy import sandboxed

PLATFORMS = ("slack", "discord", "console")

DEFAULT_SYSTEM_PROMPT = (
    "You are threadpilot, a helpful assistant that lives in a team chat thread. "
    "Answer clearly and concisely."
)


# Each may come from a file instead: `<NAME>_FILE` names it (container secrets, systemd
# credentials), so the secret need not sit in the environment of the process.
SECRETS = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "DISCORD_TOKEN",
    "THREADPILOT_PROVIDER_API_KEY",
    "GITHUB_TOKEN",
    "COPILOT_GITHUB_TOKEN",
    "THREADPILOT_DATABASE_URL",  # it may carry a password
)


class _SecretFiles(PydanticBaseSettingsSource):
    """Secrets read from the files their `<NAME>_FILE` variables name."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads them all at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SECRETS:
            path = os.environ.get(f"{name}_FILE")
            if not path:
                continue
            if os.environ.get(name):
                raise ConfigError(f"set {name} or {name}_FILE, not both")
            try:
                secret = Path(path).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
            if secret:  # an empty file is unset, as an empty variable is
                values[name] = secret
        return values


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class Settings(BaseSettings):
    """Every setting threadpilot reads. Field aliases are the public variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    slack_bot_token: SecretStr | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")

    discord_token: SecretStr | None = Field(None, alias="DISCORD_TOKEN")
    discord_api_url: str = Field("https://discord.com/api/v10", alias="DISCORD_API_URL")
    discord_gateway_url: str = Field("wss://gateway.discord.gg/", alias="DISCORD_GATEWAY_URL")
    discord_guild_ids: Annotated[tuple[int, ...], NoDecode] = Field((), alias="DISCORD_GUILD_IDS")

    # The Copilot SDK's own variables, read here too so that `.env` can hold them.
    github_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("COPILOT_GITHUB_TOKEN", "GITHUB_TOKEN")
    )
    cli_path: Path | None = Field(None, alias="COPILOT_CLI_PATH")

    data_dir: Path = Field(Path("data"), alias="THREADPILOT_DATA_DIR")
    cli_dir: Path = Field(Path(".copilot-cli"), alias="THREADPILOT_CLI_DIR")
    model: str | None = Field(None, alias="THREADPILOT_MODEL")
    provider_type: Literal["openai", "azure", "anthropic"] | None = Field(
        None, alias="THREADPILOT_PROVIDER_TYPE"
    )
    provider_base_url: str | None = Field(None, alias="THREADPILOT_PROVIDER_BASE_URL")
    provider_api_key: SecretStr | None = Field(None, alias="THREADPILOT_PROVIDER_API_KEY")
    # PostgreSQL instead of the SQLite file in the data dir: replicas (bot/leases.py).
    database_url: SecretStr | None = Field(None, alias="THREADPILOT_DATABASE_URL")
    # How long a replica's threads stay its own after its last heartbeat.
    lease_ttl_s: float = Field(15, ge=1, le=300, alias="THREADPILOT_LEASE_TTL_S")
    provider_wire_api: Literal["completions", "responses"] | None = Field(
        None, alias="THREADPILOT_PROVIDER_WIRE_API"
    )
    provider_max_prompt_tokens: int | None = Field(
        None, gt=0, alias="THREADPILOT_PROVIDER_MAX_PROMPT_TOKENS"
    )
    # Without BYOK or a GitHub token: answer with the embedded model (bot/local_model.py).
    local_model: bool = Field(True, alias="THREADPILOT_LOCAL_MODEL")
    # A GGUF file of the user's own for it to serve instead of the bundled SmolLM2.
    local_model_file: Path | None = Field(None, alias="THREADPILOT_LOCAL_MODEL_FILE")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, alias="THREADPILOT_SYSTEM_PROMPT")
    # Channel profiles (bot/profiles.py): a YAML file; unset, every thread gets the above.
    profiles: Path | None = Field(None, alias="THREADPILOT_PROFILES")
    tools: Annotated[tuple[str, ...], NoDecode] = Field((), alias="THREADPILOT_TOOLS")
    # Sandboxed shell commands (the `bash` tool) may use the network.
    shell_network: bool = Field(False, alias="THREADPILOT_SHELL_NETWORK")
    shell_timeout_s: float = Field(120, gt=0, alias="THREADPILOT_SHELL_TIMEOUT_S")
    # Hosts the URL tool may fetch over http or at a private address (an intranet wiki).
    url_allowed_hosts: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), alias="THREADPILOT_URL_ALLOWED_HOSTS"
    )
    admins: Annotated[frozenset[str], NoDecode] = Field(frozenset(), alias="THREADPILOT_ADMINS")
    allowed_workspaces: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), alias="THREADPILOT_ALLOWED_WORKSPACES"
    )
    allowed_channels: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), alias="THREADPILOT_ALLOWED_CHANNELS"
    )
    allowed_users: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), alias="THREADPILOT_ALLOWED_USERS"
    )
    user_turns_per_minute: int = Field(20, ge=0, alias="THREADPILOT_USER_TURNS_PER_MINUTE")
    thread_turns_per_minute: int = Field(30, ge=0, alias="THREADPILOT_THREAD_TURNS_PER_MINUTE")

    idle_timeout_s: int = Field(1800, gt=0, alias="THREADPILOT_IDLE_TIMEOUT_S")
    reset_margin_s: int = Field(120, ge=0, alias="THREADPILOT_RESET_MARGIN_S")
    context_reset_ratio: float = Field(0.75, gt=0, lt=1, alias="THREADPILOT_CONTEXT_RESET_RATIO")
    max_live_sessions: int = Field(50, ge=1, alias="THREADPILOT_MAX_LIVE_SESSIONS")
    # Copilot CLI processes (per tenant when isolated); `auto`: one per usable core.
    runtimes: int = Field(1, ge=1, le=64, alias="THREADPILOT_RUNTIMES")
    runtime_isolation: Literal["shared", "tenant"] = Field(
        "shared", alias="THREADPILOT_RUNTIME_ISOLATION"
    )
    tenant_idle_s: int = Field(900, gt=0, alias="THREADPILOT_TENANT_IDLE_S")
    summary_reset_notes: bool = Field(True, alias="THREADPILOT_SUMMARY_RESET_NOTES")
    restore_period_s: int = Field(7 * 86400, ge=0, alias="THREADPILOT_RESTORE_PERIOD_S")
    journal_retention_s: int = Field(30 * 86400, gt=0, alias="THREADPILOT_JOURNAL_RETENTION_S")
    turn_timeout_s: float = Field(300, gt=0, alias="THREADPILOT_TURN_TIMEOUT_S")
    shutdown_grace_s: float = Field(20, ge=0, alias="THREADPILOT_SHUTDOWN_GRACE_S")
    max_attachment_bytes: int = Field(1_000_000, ge=0, alias="THREADPILOT_MAX_ATTACHMENT_BYTES")
    max_prompt_chars: int = Field(40_000, gt=0, alias="THREADPILOT_MAX_PROMPT_CHARS")
    thread_context_chars: int = Field(20_000, ge=0, alias="THREADPILOT_THREAD_CONTEXT_CHARS")
    slack_require_mention: bool = Field(False, alias="THREADPILOT_SLACK_REQUIRE_MENTION")
    # Answer in Slack channels shared with other organisations (Slack Connect).
    slack_connect: bool = Field(False, alias="THREADPILOT_SLACK_CONNECT")
    discord_message_content: bool = Field(False, alias="THREADPILOT_DISCORD_MESSAGE_CONTENT")
    # Replicas: Discord's gateway sharding. Each replica connects the shards it is given
    # (all of them when unset); `ordinal` takes the number a StatefulSet ends its pod's
    # hostname with.
    discord_shard_count: int | None = Field(None, ge=1, alias="THREADPILOT_DISCORD_SHARD_COUNT")
    discord_shard_ids: Annotated[tuple[int, ...], NoDecode] = Field(
        (), alias="THREADPILOT_DISCORD_SHARD_IDS"
    )
    http_port: int = Field(8080, ge=0, le=65535, alias="THREADPILOT_HTTP_PORT")
    http_host: str | None = Field(None, alias="THREADPILOT_HTTP_HOST")  # see http_bind_host
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", alias="THREADPILOT_LOG_LEVEL"
    )
    log_json: bool = Field(False, alias="THREADPILOT_LOG_JSON")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secret_files = _SecretFiles(settings_cls)
        return init_settings, env_settings, secret_files, dotenv_settings, file_secret_settings

    @field_validator("discord_guild_ids", "tools", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: object) -> object:
        if value == "ordinal":
            host = socket.gethostname()
            ordinal = re.search(r"-(\d+)$", host)
            if ordinal is None:
                raise ValueError(f"the hostname {host!r} does not end with a pod ordinal (-N)")
            return (int(ordinal[1]),)
        return _split_list(value)

    @property
    def database(self) -> Path | str:
        """Where the store is: THREADPILOT_DATABASE_URL, or the SQLite file in the data dir."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.data_dir / "threadpilot.db"

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL (unset: SQLite in the data dir)")
        return value

    @field_validator("runtimes", mode="before")
    @classmethod
    def _runtimes(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return len(os.sched_getaffinity(0))
        return value

    @field_validator("url_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        items = _split_list(value)
        if isinstance(items, tuple):  # as urlsplit names them: lower case, IPv6 unbracketed
            return frozenset(item.lower().strip("[]") for item in items)
        return value

    @field_validator("tools")
    @classmethod
    def _sandboxed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return sandboxed(value)

    @field_validator(
        "admins", "allowed_workspaces", "allowed_channels", "allowed_users", mode="before"
    )
    @classmethod
    def _platform_ids(cls, value: object) -> object:
        items = _split_list(value)
        if isinstance(items, tuple):
            for item in items:
                platform, _, user = item.partition(":")
                if platform not in PLATFORMS or not user:
                    raise ValueError(
                        f"{item!r} is not platform:user_id (platform is one of "
                        f"{', '.join(PLATFORMS)}), e.g. slack:U123,discord:456"
                    )
            return frozenset(items)
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins method names onto the base URL and needs the slash.
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.reset_margin_s >= self.idle_timeout_s:
            raise ValueError(
                "THREADPILOT_RESET_MARGIN_S must be smaller than THREADPILOT_IDLE_TIMEOUT_S "
                f"(got {self.reset_margin_s} >= {self.idle_timeout_s})"
            )
        provider_parts = (
            self.provider_type,
            self.provider_api_key,
            self.provider_wire_api,
            self.provider_max_prompt_tokens,
        )
        if any(part is not None for part in provider_parts) and not self.provider_base_url:
            raise ValueError(
                "THREADPILOT_PROVIDER_BASE_URL is required when another "
                "THREADPILOT_PROVIDER_* setting is set"
            )
        if self.slack_bot_token and not (self.slack_app_token or self.slack_signing_secret):
            raise ValueError(
                "SLACK_BOT_TOKEN needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET "
                "(HTTP mode)"
            )
        if self.provider_base_url and not self.model:
            raise ValueError("THREADPILOT_MODEL is required with a BYOK provider")
        if self.discord_shard_ids and self.discord_shard_count is None:
            raise ValueError("THREADPILOT_DISCORD_SHARD_IDS needs THREADPILOT_DISCORD_SHARD_COUNT")
        beyond = [n for n in self.discord_shard_ids if n >= (self.discord_shard_count or 0)]
        if beyond:
            raise ValueError(
                f"THREADPILOT_DISCORD_SHARD_IDS {beyond} are not below "
                f"THREADPILOT_DISCORD_SHARD_COUNT ({self.discord_shard_count}): shards count "
                "from 0"
            )
        return self

    @property
    def byok(self) -> bool:
        return self.provider_base_url is not None

    @property
    def http_bind_host(self) -> str:
        """Where the HTTP port listens: THREADPILOT_HTTP_HOST, else this machine alone,
        unless Slack's HTTP mode needs Slack to reach /slack/events."""
        if self.http_host:
            return self.http_host
        slack_http_mode = self.slack_bot_token and not self.slack_app_token
        return "0.0.0.0" if slack_http_mode else "127.0.0.1"

    @property
    def admin_socket(self) -> Path:
        """The admin endpoints' unix socket (`threadpilot status`)."""
        return self.data_dir / "admin.sock"

    def is_admin(self, platform: str, user_id: str) -> bool:
        # Whoever runs the console already owns the process and its data.
        return platform == "console" or f"{platform}:{user_id}" in self.admins


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one readable ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["loc"]:  # a single variable; model-level errors name theirs in the message
                name = ".".join(str(part) for part in error["loc"])
                message = f"{name}: {message} (got {error['input']!r})"
            lines.append(message)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
