"""Configuration: contract names, validation, and errors that name the variable."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import AliasChoices

from bot.config import Settings, load_settings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in [
        "SLACK_BOT_TOKEN",
        "DISCORD_TOKEN",
        "THREADPILOT_ADMINS",
        "THREADPILOT_IDLE_TIMEOUT_S",
        "THREADPILOT_RESET_MARGIN_S",
        "THREADPILOT_PROVIDER_BASE_URL",
        "THREADPILOT_MODEL",
    ]:
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_contract() -> None:
    settings = load_settings()
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.discord_api_url == "https://discord.com/api/v10"
    assert settings.discord_gateway_url == "wss://gateway.discord.gg/"
    assert (settings.idle_timeout_s, settings.reset_margin_s) == (1800, 120)
    assert settings.context_reset_ratio == 0.75
    assert settings.max_live_sessions == 50 and settings.http_port == 8080
    assert settings.data_dir == Path("data") and settings.tools == ()
    assert not settings.byok and settings.admins == frozenset()


def test_values_come_from_the_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text(
        "THREADPILOT_MAX_LIVE_SESSIONS=7\nSLACK_API_URL=http://127.0.0.1:9/api\n"
    )
    monkeypatch.setenv("THREADPILOT_ADMINS", "slack:U123, discord:456")
    monkeypatch.setenv("DISCORD_GUILD_IDS", "1,2")
    settings = load_settings()
    assert settings.max_live_sessions == 7
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"  # slack_sdk needs the slash
    assert settings.is_admin("slack", "U123") and settings.is_admin("discord", "456")
    assert not settings.is_admin("slack", "456")
    assert settings.discord_guild_ids == (1, 2)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("THREADPILOT_IDLE_TIMEOUT_S", "soon", "{name}: Input should be a valid integer"),
        ("THREADPILOT_CONTEXT_RESET_RATIO", "1.5", "{name}: Input should be less than 1"),
        ("THREADPILOT_ADMINS", "U123", "{name}: 'U123' is not platform:user_id"),
        ("THREADPILOT_RESET_MARGIN_S", "1800", "{name} must be smaller"),
        ("THREADPILOT_PROVIDER_TYPE", "openai", "THREADPILOT_PROVIDER_BASE_URL is required"),
        ("THREADPILOT_HTTP_PORT", "70000", "{name}: Input should be less than"),
        ("THREADPILOT_DISCORD_SHARD_IDS", "0", "{name} needs THREADPILOT_DISCORD_SHARD_COUNT"),
    ],
)
def test_a_wrong_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(expected.format(name=name))):
        load_settings()


def test_the_command_fails_at_start_with_the_variable_named(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "console"],
        env={"PATH": "/usr/bin:/bin", "THREADPILOT_MAX_LIVE_SESSIONS": "zero"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "THREADPILOT_MAX_LIVE_SESSIONS: Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr


def variables() -> dict[str, str]:
    """Every variable the settings read -> the field it sets."""
    names: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        for variable in alias.choices if isinstance(alias, AliasChoices) else [alias]:
            names[str(variable)] = name
    return names


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert documented == set(variables())


def test_the_readme_configuration_table_matches_the_settings() -> None:
    rows = re.findall(r"^\| `([A-Z_]+)` \| (`[^`]*`|—) \|", README.read_text(), re.M)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)) and set(names) == set(variables())
    for name, stated in rows:
        field = variables()[name]
        default = Settings.model_fields[field].default
        if stated == "—":  # unset
            assert default in (None, (), frozenset()), name
        else:  # the default the README states is the one the settings class has
            given = Settings(_env_file=None, **{name: stated.strip("`")})  # type: ignore[arg-type]
            assert getattr(given, field) == default, name


def test_env_example_as_a_dotenv_is_valid() -> None:
    Path(".env").write_text((ROOT / ".env.example").read_text())
    settings = load_settings()
    assert not settings.byok and settings.slack_bot_token is None


def test_secrets_may_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "slack_bot_token"
    token.write_text("xoxb-from-a-file\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("SLACK_BOT_TOKEN_FILE", str(token))
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-in-the-environment")
    monkeypatch.setenv("DISCORD_TOKEN_FILE", str(empty))  # as if unset
    monkeypatch.setenv("GITHUB_TOKEN_FILE", str(token))
    settings = load_settings()
    assert settings.slack_bot_token is not None and settings.github_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-from-a-file"
    assert settings.github_token.get_secret_value() == "xoxb-from-a-file"
    assert settings.discord_token is None

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-also-in-the-environment")
    with pytest.raises(ConfigError, match="set SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE"):
        load_settings()
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    monkeypatch.setenv("SLACK_BOT_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"SLACK_BOT_TOKEN_FILE: cannot read .*missing"):
        load_settings()


def test_discord_shards_are_below_the_count_or_the_pod_ordinal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADPILOT_DISCORD_SHARD_COUNT", "3")
    monkeypatch.setenv("THREADPILOT_DISCORD_SHARD_IDS", "1,3")
    with pytest.raises(ConfigError, match=re.escape("SHARD_IDS [3] are not below")):
        load_settings()
    # A StatefulSet's pod threadpilot-2 takes shard 2.
    monkeypatch.setenv("THREADPILOT_DISCORD_SHARD_IDS", "ordinal")
    monkeypatch.setattr(socket, "gethostname", lambda: "threadpilot-2")
    assert load_settings().discord_shard_ids == (2,)
    monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
    with pytest.raises(ConfigError, match="does not end with a pod ordinal"):
        load_settings()
