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
    local = LocalModel()
    base_url = await asyncio.to_thread(local.start)
    # A plain OpenAI-compatible provider to the runtime; a short prompt and no tools, as
    # that is all a 135M model can follow (and its whole context holds).
    effective = settings.model_copy(
        update={
            "provider_type": "openai",
            "provider_base_url": base_url,
            "provider_wire_api": "completions",
            "provider_max_prompt_tokens": local_model.CONTEXT_TOKENS - local_model.ANSWER_TOKENS,
            "model": local_model.MODEL_NAME,
            "tools": (),
            "profiles": None,
            "system_prompt": (
                settings.system_prompt
                if "system_prompt" in settings.model_fields_set
                else local_model.SYSTEM_PROMPT
            ),
        }
    )
    return ModelSource(
        effective,
        f"the embedded {local_model.MODEL_NAME} at {base_url} "
        "(no BYOK provider and no GitHub token)",
        local,
    )
