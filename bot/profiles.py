"""Profiles: which agent each thread gets (prompt, model, tools, working directory,
redaction), from the YAML file THREADPILOT_PROFILES names.

    default:                     # every thread (optional)
      system_prompt: You help the engineering team.
    profiles:
      payments:
        channels: [slack:C0PAYMENTS]      # also workspaces: [...], threads: [slack:C1/17000.1]
        system_prompt: You work on the payments service. Never guess amounts.
        model: gpt-5
        tools: [view, grep, glob]                  # without asking
        ask: [bash, edit, create]                  # each time, in the thread
        approvers: [slack:U0LEAD]                  # besides whoever asked
        working_directory: /srv/checkouts/payments   # read-only unless `writable: true`
        redact: {patterns: ['ACCT-\\d{8}']}         # emails, phones, cards: on by default

A thread gets the file's `default`, then the profile of its workspace (Slack team,
Discord server), of its channel, and of the thread itself, each setting what it names
over the levels above. What no level sets comes from the settings (THREADPILOT_MODEL,
...), so without a file every thread gets exactly what the settings say. The file is
read again on SIGHUP and when it changes; a file that does not validate leaves the
profiles as they were, and the error names the file, line and field.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bot.budgets import DailyBudgets
from bot.clock import Clock, system_clock
from bot.config import DEFAULT_SYSTEM_PROMPT, PLATFORMS, Settings
from bot.errors import ConfigError
from bot.mcp import McpServer
from bot.redaction import Redaction
from bot.thread_key import ThreadKey
from bot.tool_policy import sandboxed

log = logging.getLogger(__name__)

LEVELS = ("workspace", "channel", "thread")  # from the broadest; the narrowest wins
_SCOPE = re.compile(rf"(?:{'|'.join(PLATFORMS)}):[^/\s]+(?:/[^/\s]+)?")


def _scope(scope: str) -> str:
    if not _SCOPE.fullmatch(scope):
        raise ValueError(
            f"{scope!r} is not platform:id (or platform:channel/thread for a thread), "
            f"platform one of {', '.join(PLATFORMS)}"
        )
    return scope


_Scope = Annotated[str, AfterValidator(_scope)]


def _user(user: str) -> str:
    platform, _, user_id = user.partition(":")
    if platform not in PLATFORMS or not user_id:
        raise ValueError(f"{user!r} is not platform:user_id, e.g. slack:U123 or discord:456")
    return user


_User = Annotated[str, AfterValidator(_user)]


class Provider(BaseModel):
    """A BYOK model provider: THREADPILOT_PROVIDER_*, or a profile's `provider`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["openai", "azure", "anthropic"] = "openai"
    base_url: str
    api_key: SecretStr | None = None
    api_key_file: Path | None = None  # read at each session start: keys may rotate
    wire_api: Literal["completions", "responses"] | None = None
    max_prompt_tokens: int | None = Field(default=None, gt=0)

    @classmethod
    def of(cls, settings: Settings) -> Provider | None:
        if settings.provider_base_url is None:
            return None
        return cls(
            type=settings.provider_type or "openai",
            base_url=settings.provider_base_url,
            api_key=settings.provider_api_key,
            wire_api=settings.provider_wire_api,
            max_prompt_tokens=settings.provider_max_prompt_tokens,
        )

    def to_sdk(self) -> dict[str, Any]:
        """The SDK's `provider` session option."""
        provider: dict[str, Any] = {"type": self.type, "base_url": self.base_url}
        if self.api_key_file is not None:
            provider["api_key"] = self.api_key_file.read_text().strip()
        elif self.api_key is not None:
            provider["api_key"] = self.api_key.get_secret_value()
        if self.wire_api:
            provider["wire_api"] = self.wire_api
        if self.max_prompt_tokens:
            provider["max_prompt_tokens"] = self.max_prompt_tokens
        return provider


class _Settings(BaseModel):
    """What a level of profiles may set; unset (None) leaves it to the level above."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: str | None = None
    model: str | None = None
    models: tuple[str, ...] | None = None  # a thread may switch to (`model NAME`)
    provider: Provider | None = None
    tools: tuple[str, ...] | None = None
    ask: tuple[str, ...] | None = None
    approvers: tuple[_User, ...] | None = None
    approval_timeout_s: float | None = Field(default=None, gt=0)
    working_directory: Path | None = None
    writable: bool | None = None
    redact: Redaction | None = None
    budgets: DailyBudgets | None = None
    mcp_servers: dict[str, McpServer] | None = None

    @field_validator("tools", "ask")
    @classmethod
    def _sandboxed(cls, tools: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if tools is None else sandboxed(tools)


class _Profile(_Settings):
    """A named profile and where it applies."""

    workspaces: tuple[_Scope, ...] = ()  # slack:T123, discord:<server id>
    channels: tuple[_Scope, ...] = ()  # slack:C123, discord:<channel id>
    threads: tuple[_Scope, ...] = ()  # slack:C123/<thread ts>, discord:<channel id>/<thread id>

    def scopes(self, level: str) -> tuple[str, ...]:
        return {"workspace": self.workspaces, "channel": self.channels}.get(level, self.threads)


_S = TypeVar("_S", bound=_Settings)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: _Settings = _Settings()
    profiles: dict[str, _Profile] = {}

    def sections(self) -> list[tuple[tuple[str, ...], _Settings]]:
        """Every level of settings in the file, with where it is in it."""
        named = [(("profiles", name), profile) for name, profile in self.profiles.items()]
        return [(("default",), self.default), *named]


def scope(key: ThreadKey, level: str) -> str:
    """How the profiles file names `key`'s workspace, channel or thread."""
    named = {"workspace": key.workspace, "channel": key.channel}
    return f"{key.platform}:{named.get(level, f'{key.channel}/{key.thread}')}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadProfile:
    """What a thread's agent is, all levels applied, and where each part came from."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    model: str | None = None  # None: the runtime's default
    models: tuple[str, ...] = ()  # others a thread may switch to
    provider: Provider | None = None  # None: the runtime's own (GitHub)
    tools: tuple[str, ...] = ()  # allowed without asking
    ask: tuple[str, ...] = ()  # allowed once approved in the thread (bot/approvals.py)
    approvers: tuple[str, ...] = ()  # platform:user ids who may approve, besides the asker
    approval_timeout_s: float = 120.0  # unanswered this long: denied
    working_directory: Path | None = None  # None: the thread's own directory
    writable: bool = True
    redact: Redaction | None = None
    budgets: DailyBudgets | None = None
    mcp_servers: Mapping[str, McpServer] = field(default_factory=dict)
    name: str = "none"  # the narrowest profile that applies (metrics are by it)
    applied: tuple[str, ...] = ()  # the levels that apply, broadest first
    sources: tuple[tuple[str, str], ...] = ()  # (setting, the level it came from)

    @property
    def choices(self) -> tuple[str, ...]:
        """The models a thread may answer with: its profile's and those it may switch to."""
        return tuple(dict.fromkeys((*((self.model,) if self.model else ()), *self.models)))

    @property
    def applies(self) -> str:
        """Which profiles apply, broadest first, and why, in a line."""
        return "; then ".join(self.applied) or "none (the bot's own settings)"

    def explain(self) -> str:
        """Which profiles apply, what the agent is, and where each part comes from."""
        lines = [f"Profiles here, broadest first: {self.applies}."]
        came = dict(self.sources)
        prompt = " ".join(self.system_prompt.split())
        directory = (
            f"{self.working_directory} ({'writable' if self.writable else 'read-only'})"
            if self.working_directory
            else "a directory of this thread's own"
        )
        parts = {
            "model": self.model or "the runtime's default",
            "provider": f"{self.provider.type} at {self.provider.base_url}"
            if self.provider
            else "GitHub Copilot",
            "tools": ", ".join(self.tools) or "none",
            "ask": ", ".join(self.ask) or "none",
            "approvers": ", ".join(self.approvers) or "only whoever asked",
            "working_directory": directory,
            "redact": _redaction(self.redact),
            "budgets": self.budgets.describe() if self.budgets else "none",
            "mcp_servers": ", ".join(self.mcp_servers) or "none",
            "system_prompt": prompt[:200] + ("..." if len(prompt) > 200 else ""),
        }
        if "writable" in came:  # said apart from the directory, maybe at another level
            parts["writable"] = "yes" if self.writable else "no"
        for name, value in parts.items():
            label = name.replace("_", " ")
            lines.append(f"  {label}: {value} (from {came.get(name) or 'the settings'})")
        return "\n".join(lines)


def _redaction(redact: Redaction | None) -> str:
    if redact is None:
        return "off"
    kinds = [
        kind
        for kind, on in (
            ("emails", redact.emails),
            ("phone numbers", redact.phones),
            ("card numbers", redact.cards),
        )
        if on
    ]
    if redact.patterns:
        kinds.append(f"{len(redact.patterns)} patterns of its own")
    return ", ".join(kinds) or "nothing"


@dataclass(frozen=True, slots=True)
class ProfileBook:
    """A profiles file, validated: resolves any thread's profile."""

    path: Path
    file: _File

    def levels(self, key: ThreadKey) -> Iterator[tuple[str, str, _Settings]]:
        """The profiles that apply to `key`, broadest first: name, reason, settings."""
        if self.file.default.model_fields_set:
            yield "default", "default", self.file.default
        for level in LEVELS:
            here = scope(key, level)
            for name, profile in self.file.profiles.items():
                if here in profile.scopes(level):
                    yield name, f"{name!r} ({level} {here})", profile

    def resolve(self, key: ThreadKey, base: ThreadProfile) -> ThreadProfile:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        applied = []
        names = ["none"]
        for name, reason, level in self.levels(key):
            names.append(name)
            applied.append(reason)
            for setting in _Settings.model_fields:
                value = getattr(level, setting)
                if value is not None:
                    values[setting], sources[setting] = value, reason
        directory = values.get("working_directory", base.working_directory)
        return ThreadProfile(
            system_prompt=values.get("system_prompt", base.system_prompt),
            model=values.get("model", base.model),
            models=values.get("models", base.models),
            provider=values.get("provider", base.provider),
            tools=values.get("tools", base.tools),
            ask=values.get("ask", base.ask),
            approvers=values.get("approvers", base.approvers),
            approval_timeout_s=values.get("approval_timeout_s", base.approval_timeout_s),
            working_directory=directory,
            # A directory of the team's (a checkout) is read-only unless a profile says so.
            writable=values.get("writable", directory is None),
            redact=values.get("redact", base.redact),
            budgets=values.get("budgets", base.budgets),
            mcp_servers=values.get("mcp_servers", base.mcp_servers),
            name=names[-1],
            applied=tuple(applied),
            sources=tuple(sources.items()),
        )


def load(path: Path, turn_timeout_s: float = math.inf) -> ProfileBook:
    """Read and validate the profiles file; ConfigError naming file, line and field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the profiles file ({exc.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    finally:
        loader.dispose()
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "\n".join(
                _problem(path, root, error["loc"], error["msg"].removeprefix("Value error, "))
                for error in exc.errors()
            )
        ) from None
    parsed = _checked(path, root, parsed, turn_timeout_s)
    return ProfileBook(path, parsed)


def _checked(path: Path, root: yaml.Node | None, parsed: _File, turn_timeout_s: float) -> _File:
    """What validation alone cannot see: a scope claimed twice, working directories and
    key files that are not there (relative ones are taken from the file's own
    directory), an approval waited for longer than the turn that waits for it."""
    problems: list[str] = []
    for at, settings in parsed.sections():
        timeout = settings.approval_timeout_s
        if timeout is not None and timeout >= turn_timeout_s:
            problems.append(
                _problem(path, root, (*at, "approval_timeout_s"),
                         f"{timeout:g} s is not shorter than THREADPILOT_TURN_TIMEOUT_S "
                         f"({turn_timeout_s:g} s), which includes the wait")
            )  # fmt: skip
    claimed: dict[str, str] = {}
    for name, profile in parsed.profiles.items():
        for level in LEVELS:
            for index, where in enumerate(profile.scopes(level)):
                other = claimed.setdefault(where, name)
                if other != name:
                    loc = ("profiles", name, f"{level}s", index)
                    problems.append(
                        _problem(path, root, loc, f"{where} is already given profile {other!r}")
                    )
    default = _anchored(path, root, ("default",), parsed.default, problems)
    profiles = {
        name: _anchored(path, root, ("profiles", name), profile, problems)
        for name, profile in parsed.profiles.items()
    }
    if problems:
        raise ConfigError("\n".join(problems))
    return _File(default=default, profiles=profiles)


def _anchored(
    path: Path, root: yaml.Node | None, loc: tuple[str, ...], level: _S, problems: list[str]
) -> _S:
    """`level` with its working directory and provider key file made absolute (from the
    file's directory); a problem for each that is not there."""

    def found(name: tuple[str, ...], given: Path, is_there: Callable[[Path], bool]) -> Path:
        absolute = (path.parent / given.expanduser()).resolve()
        if not is_there(absolute):
            problems.append(
                _problem(path, root, (*loc, *name), f"{absolute} is not there (or not readable)")
            )
        return absolute

    if level.working_directory is not None:
        directory = found(("working_directory",), level.working_directory, Path.is_dir)
        level = level.model_copy(update={"working_directory": directory})
    provider = level.provider
    if provider is not None and provider.api_key_file is not None:
        key = found(("provider", "api_key_file"), provider.api_key_file, _readable)
        level = level.model_copy(
            update={"provider": provider.model_copy(update={"api_key_file": key})}
        )
    return level


def _readable(file: Path) -> bool:
    return file.is_file() and os.access(file, os.R_OK)


def _problem(path: Path, root: yaml.Node | None, loc: tuple[Any, ...], text: str) -> str:
    """A problem of the file, as every error names it: file, line, field."""
    return f"{path}:{_line(root, loc)}: {'.'.join(map(str, loc)) or 'file'}: {text}"


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The line (from 1) of the deepest node of `loc` the file has."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


class Profiles:
    """The profiles in force: `resolve` a thread's. `reload()` reads the file again (on
    SIGHUP); `check()` does when it changed."""

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self._path = settings.profiles
        self._turn_timeout_s = settings.turn_timeout_s
        self._clock = clock
        self._base = ThreadProfile(
            system_prompt=settings.system_prompt,
            model=settings.model,
            provider=Provider.of(settings),
            tools=settings.tools,
        )
        self.book: ProfileBook | None = None
        self.loaded_at: float | None = None
        self.error: str | None = None  # why the file's last change was not taken
        self._stamp: tuple[int, int, int] | None = None
        if self._path is not None:
            self._stamp = self._stat()
            self.book = load(self._path, self._turn_timeout_s)  # a bad file stops the bot
            self.loaded_at = clock()

    def resolve(self, key: ThreadKey, chosen: str | None = None) -> ThreadProfile:
        """The profile of `key`'s thread; with the model the thread `chosen` (`model
        NAME`), as long as its profile still offers it."""
        profile = self._base if self.book is None else self.book.resolve(key, self._base)
        if chosen is None or chosen == profile.model or chosen not in profile.choices:
            return profile
        sources = (*(s for s in profile.sources if s[0] != "model"), ("model", "this thread"))
        return dataclasses.replace(profile, model=chosen, sources=sources)

    def reload(self) -> bool:
        """Read the file again; whether it was taken (else the old profiles stay)."""
        if self._path is None:
            return False
        self._stamp = self._stat()
        try:
            self.book = load(self._path, self._turn_timeout_s)
        except ConfigError as exc:
            self.error = str(exc)
            log.error("the profiles file was not reloaded, the old profiles stay:\n%s", exc)
            return False
        self.loaded_at, self.error = self._clock(), None
        log.info("profiles reloaded from %s", self._path)
        return True

    def check(self) -> str:
        """Reload if the file changed since it was last read (the scheduler asks every
        few seconds: no watcher to install, and an editor's save-by-rename is seen too);
        the profiles' state in a line."""
        if self._path is not None and self._stat() != self._stamp:
            self.reload()
        return self.describe()

    def mcp_servers(self) -> dict[str, McpServer]:
        """Every MCP server the file names (`doctor` tries them)."""
        if self.book is None:
            return {}
        sections = [settings for _, settings in self.book.file.sections()]
        return {n: s for level in sections for n, s in (level.mcp_servers or {}).items()}

    def enables(self, tool: str) -> bool:
        """Whether any profile gives the agent `tool`."""
        if self.book is None:
            return False
        sections = [settings for _, settings in self.book.file.sections()]
        return any(tool in (level.tools or ()) + (level.ask or ()) for level in sections)

    def _stat(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return (found.st_ino, found.st_mtime_ns, found.st_size)

    def describe(self) -> str:
        """The profiles' state in one line, for `status`."""
        if self.book is None:
            return "profiles: none (THREADPILOT_PROFILES is unset)"
        count = len(self.book.file.profiles)
        line = f"profiles: {count} from {self._path}"
        if self.error:
            line += f"; the file's last change was NOT taken: {self.error.splitlines()[0]}"
        return line
