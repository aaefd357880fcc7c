"""The embedded model's answers, before and after the fix of issue 17 (item 5).

Asks fixed questions (facts, a two-turn memory pair, a code block, a list, ...) end to end:
the real router and Copilot CLI, in-process, against the embedded llama.cpp server, each
question in a thread of its own. Twice, with the same model file:

- before: the model's own chat template (the CLI's `<current_datetime>` block reaches the
  model) and the old system prompt;
- after: the template that drops that block, and the tuned SYSTEM_PROMPT.

The CLI asks at temperature 0 (greedy decoding), so "after" repeats run to run; "before"
does not quite, as the time in the date block the model reads changes. `tuned` is the set the
prompt was tuned on; `held-out` was not looked at while tuning. The ok/-- mark is a simple
automatic check; score the printed answers by hand too.

    python -m bench.local_model [--set tuned|held-out|both] [--model-file PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import app_on
from bot import local_model
from bot.config import Settings
from bot.inbound import Inbound
from bot.local_model import LocalModel
from bot.model_choice import served_by
from bot.replies import ErrorReply, FinalText, OpenedThread, ReplyEvent
from bot.thread_key import ThreadKey
from tests.conftest import make_settings

# SYSTEM_PROMPT before it was tuned.
OLD_PROMPT = "You are a helpful assistant. Answer in one or two short English sentences."


@dataclass(frozen=True, slots=True)
class Question:
    turns: tuple[str, ...]  # said in one thread; the answer to the last one is scored
    expected: str
    check: str  # a regular expression the answer should match (case-insensitive)


def ask(text: str, expected: str, check: str) -> Question:
    return Question((text,), expected, check)


TUNED = (
    ask("What is the capital of France?", "Paris", r"\bParis\b"),
    Question(
        ("My name is Ada. Remember it.", "What is my name?"), "Ada", r"your name is Ada|^Ada\b"
    ),
    ask("How many days are there in a week?", "7", r"\b(7|seven)\b"),
    ask("What is 2 + 3?", "5", r"\b(5|five)\b"),
    ask("Who wrote Romeo and Juliet?", "Shakespeare", r"Shakespeare"),
    ask("What is the largest planet in our solar system?", "Jupiter", r"Jupiter"),
    ask("What colour is the sky on a clear day?", "blue", r"\bblue\b"),
    ask("What is the opposite of hot?", "cold", r"\bcold\b"),
    ask("What language is spoken in Brazil?", "Portuguese", r"Portuguese"),
    ask('How do you say "thank you" in French?', "merci", r"\bmerci\b"),
    ask(
        "Write a Python function that adds two numbers. Put it in a code block.",
        "a code block with def ...: return a + b",
        r"```[\s\S]*def \w+\([\s\S]*return[\s\S]*```",
    ),
    ask("List three fruits.", "a list of three fruits", r"(^|\n)\s*(1\.|-|\*)[\s\S]*\n"),
)

HELD_OUT = (
    ask("What is the capital of Japan?", "Tokyo", r"\bTokyo\b"),
    Question(
        ("My favourite colour is green. Please remember that.", "What is my favourite colour?"),
        "green",
        r"your favou?rite colou?r is green|^green\b",
    ),
    ask("How many legs does a spider have?", "8", r"\b(8|eight)\b"),
    ask("What is 10 minus 4?", "6", r"\b(6|six)\b"),
    ask("Who painted the Mona Lisa?", "Leonardo da Vinci", r"Leonardo|da Vinci"),
    ask("What is the chemical symbol for water?", "H2O", r"H2O|H₂O"),
    ask("Which animal is known as the king of the jungle?", "the lion", r"\blions?\b"),
    ask("What is the freezing point of water in degrees Celsius?", "0", r"\b(0|zero)\b"),
    ask("What is the largest ocean on Earth?", "the Pacific", r"Pacific"),
    ask("How many continents are there?", "7", r"\b(7|seven)\b"),
    ask(
        "Show me a shell command that lists the files in a directory, in a code block.",
        "a code block with ls",
        r"```[\s\S]*\bls\b[\s\S]*```",
    ),
    ask("Name three colours of the rainbow as a list.", "a list of three", r"(^|\n)\s*(1\.|-|\*)"),
)

SETS = {"tuned": TUNED, "held-out": HELD_OUT}


class Answers:
    """A reply sink that keeps the final text (or the error) of each turn."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        async for event in events:
            if isinstance(event, FinalText):
                self.texts.append(event.text)
            elif isinstance(event, ErrorReply):
                self.texts.append(f"! {event.message}")
        return ["ref"]

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        raise NotImplementedError


async def answers(
    model: local_model.ModelFile, fixed: bool, questions: tuple[Question, ...]
) -> list[str]:
    """The last answer to each question, asked in threads of their own on the console."""
    local = LocalModel(model, strip_datetime=fixed)
    await asyncio.to_thread(local.start)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prompt = local_model.SYSTEM_PROMPT if fixed else OLD_PROMPT
            settings = make_settings(
                Path(tmp), local.base_url, system_prompt=prompt,
                user_turns_per_minute=0, thread_turns_per_minute=0,
            )  # fmt: skip
            app = await app_on(served_by(settings, local))
            try:
                found = []
                for n, question in enumerate(questions):
                    key = ThreadKey("console", "local", "terminal", f"q{n}")
                    sink = Answers()
                    for turn, text in enumerate(question.turns):
                        inbound = Inbound(event_id=f"{n}-{turn}", key=key, user_id="U", text=text)
                        await app.router.dispatch(inbound, sink)
                    found.append(sink.texts[-1] if sink.texts else "(no answer)")
                return found
            finally:
                await app.close()
    finally:
        await asyncio.to_thread(local.stop)


def one_line(text: str) -> str:
    return text.strip().replace("\n", "\\n")


async def main(sets: list[str], model_path: Path | None) -> None:
    model = local_model.model_file(Settings(_env_file=None, local_model_file=model_path))  # type: ignore[call-arg]
    print(f"model: {model.name} ({model.path}), context {model.context_tokens} tokens")
    for name in sets:
        questions = SETS[name]
        before = await answers(model, False, questions)
        after = await answers(model, True, questions)
        print()
        print(f"== {name} set ({len(questions)} questions); ok/--: the automatic check")
        scores = [0, 0]
        for n, (question, old, new) in enumerate(zip(questions, before, after, strict=True), 1):
            print(f"{n:>2}. {' / '.join(question.turns)}  [expected: {question.expected}]")
            for column, (label, text) in enumerate((("before", old), ("after ", new))):
                right = re.search(question.check, text, re.IGNORECASE) is not None
                scores[column] += right
                print(f"    {label} {'ok' if right else '--'} {one_line(text)}")
        total = len(questions)
        print(f"automatic score: before {scores[0]}/{total}, after {scores[1]}/{total}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the embedded model's answers, before and after")
    parser.add_argument("--set", choices=[*SETS, "both"], default="both")
    parser.add_argument("--model-file", type=Path, help="a GGUF file (default: SmolLM2-135M)")
    args = parser.parse_args()
    chosen = list(SETS) if args.set == "both" else [args.set]
    asyncio.run(main(chosen, args.model_file))
