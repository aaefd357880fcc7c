"""Which model answers, and why: a BYOK provider, a GitHub token, the embedded local model,
or the GitHub user logged in on this machine, the first that applies (printed at start).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot import local_model
from bot.config import Settings
from bot.local_model import LocalModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Which model answers and why (printed at start), with the settings that make the
    runtime use it."""

    settings: Settings
    description: str
    local: LocalModel | None = None

    async def stop(self) -> None:
        if self.local is not None:
            await asyncio.to_thread(self.local.stop)


async def choose_model(settings: Settings) -> ModelSource:
    """The first that applies: a BYOK provider, a GitHub token, the embedded local model,
    the GitHub user logged in on this machine. Starts the embedded model when chosen."""
    if settings.byok:
        return ModelSource(
            settings,
            f"{settings.model} from {settings.provider_type or 'openai'} provider at "
            f"{settings.provider_base_url} (THREADPILOT_PROVIDER_BASE_URL is set)",
        )
    model = f" {settings.model}" if settings.model else ""
    if settings.github_token:
        return ModelSource(settings, f"GitHub Copilot{model} (a GitHub token is set)")
    if not local_model.chosen(settings):
        why = (
            "THREADPILOT_LOCAL_MODEL=false"
            if not settings.local_model
            else f"the embedded model is not installed: {local_model.INSTALL_HINT}"
        )
        return ModelSource(
            settings,
            f"GitHub Copilot{model} as the GitHub user logged in on this machine, if any "
            f"(no BYOK provider, no GitHub token, {why})",
        )
    if settings.tools:
        log.warning("THREADPILOT_TOOLS is ignored: the embedded model cannot use tools")
    if settings.profiles:  # they name models and tools the demo model has not
        log.warning("THREADPILOT_PROFILES is ignored: it is for a real model, not the demo one")
    local = LocalModel(await asyncio.to_thread(local_model.model_file, settings))
    await asyncio.to_thread(local.start)
    served = local.model
    which = "" if served.demo else f"THREADPILOT_LOCAL_MODEL_FILE={served.path}; "
    return ModelSource(
        served_by(settings, local),
        f"the embedded {served.name} at {local.base_url} "
        f"({which}no BYOK provider and no GitHub token)",
        local,
    )


def served_by(settings: Settings, local: LocalModel) -> Settings:
    """`settings` for the runtime to use the started embedded model: a plain
    OpenAI-compatible provider, a short prompt (unless THREADPILOT_SYSTEM_PROMPT is set)
    and no tools, as that is all a small model can follow (and its context holds)."""
    return settings.model_copy(
        update={
            "provider_type": "openai",
            "provider_base_url": local.base_url,
            "provider_wire_api": "completions",
            "provider_max_prompt_tokens": local.model.context_tokens - local_model.ANSWER_TOKENS,
            "model": local.model.name,
            "tools": (),
            "profiles": None,
            "system_prompt": (
                settings.system_prompt
                if "system_prompt" in settings.model_fields_set
                else local_model.SYSTEM_PROMPT
            ),
        }
    )
