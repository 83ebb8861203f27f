"""Templates: our own words, placeholders checked at construction, stable hashes, messages."""

from __future__ import annotations

import hashlib

import pytest

from toa.errors import ConfigError
from toa.search import (
    Template,
    Templates,
    aggregate_messages,
    fresh_messages,
    refine_messages,
    template_hash,
)
from toa.types import Message, Prompt


@pytest.mark.parametrize("task", ["instruction", "translation", "math"])
def test_every_task_has_a_full_valid_set(task: str) -> None:
    templates = Templates.for_task(task)  # type: ignore[arg-type]
    assert templates.task == task
    hashes = templates.hashes()
    assert set(hashes) >= {"refine", "aggregate", "aggregate_system"}
    assert all(len(h) == 64 for h in hashes.values())
    assert len(set(hashes.values())) == len(hashes)


def test_hash_is_sha256_of_the_text_and_stable() -> None:
    text = "Improve {answer} for {question}"
    assert template_hash(text) == hashlib.sha256(text.encode()).hexdigest()
    assert Template("refine", text).hash == template_hash(text)
    # the golden trees record every built-in hash, so changing the words shows up there
    instruction = Templates.for_task("instruction")
    assert instruction.refine.hash == template_hash(instruction.refine.text)
    assert Templates.for_task("instruction").hashes() == instruction.hashes()


def test_instruction_refine_asks_for_a_better_complete_answer_without_critique() -> None:
    text = Templates.for_task("instruction").refine.text.lower()
    assert "better" in text
    assert "complete" in text
    assert "critique" not in text


def test_math_keeps_the_final_answer_format() -> None:
    math_set = Templates.for_task("math")
    assert "Final answer:" in math_set.refine.text
    assert math_set.fresh is not None
    assert "Final answer:" in math_set.fresh.text


@pytest.mark.parametrize(
    ("role", "text", "message"),
    [
        ("refine", "Improve {answer}", r"missing placeholder\(s\) \['question'\]"),
        ("refine", "{question} {answer} {critique}", r"unknown placeholder\(s\) \['critique'\]"),
        ("refine", "{question} {answer} {}", "plain name"),
        ("refine", "{question} {answer} {0}", "plain name"),
        ("refine", "{question.upper} {answer}", "plain name"),
        ("refine", "{question!r} {answer}", "plain name"),
        ("aggregate", "{question} {responses:>10}", "plain name"),
        ("aggregate", "{question} {responses", "not valid str.format"),
        ("aggregate", "{question} }", "not valid str.format"),
    ],
)
def test_bad_placeholders_are_rejected_clearly(role: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Template(role, text)  # type: ignore[arg-type]


def test_literal_braces_are_allowed_when_doubled() -> None:
    template = Template("refine", "{{json}} {question} -> {answer}")
    assert template.render({"question": "q", "answer": "a"}) == "{json} q -> a"


def test_overrides_replace_one_role_and_change_its_hash() -> None:
    base = Templates.for_task("instruction")
    custom = Templates.for_task("instruction", refine="Q: {question}\nA: {answer}\nBetter:")
    assert custom.refine.text.startswith("Q: ")
    assert custom.aggregate == base.aggregate
    assert custom.hashes()["refine"] != base.hashes()["refine"]
    with pytest.raises(ConfigError, match="unknown template role"):
        base.with_overrides(critique="{question}")
    with pytest.raises(ConfigError, match="unknown task"):
        Templates.for_task("poetry")  # type: ignore[arg-type]


def test_messages_replace_the_last_user_message_and_keep_the_rest() -> None:
    prompt = Prompt(
        id="p",
        messages=(
            Message("system", "Be brief."),
            Message("user", "Hi"),
            Message("assistant", "Hello"),
            Message("user", "What is 2+2?"),
        ),
    )
    templates = Templates.for_task("instruction")
    assert fresh_messages(prompt, templates) == prompt.messages
    refined = refine_messages(prompt, "5", templates)
    assert refined[:3] == prompt.messages[:3]
    assert "What is 2+2?" in refined[3].content
    assert "5" in refined[3].content
    assert prompt.messages[3].content == "What is 2+2?"  # the caller's prompt is untouched


def test_aggregator_goes_in_the_user_message_by_default() -> None:
    prompt = Prompt.from_text("p", "Name a colour.")
    templates = Templates.for_task("instruction")
    (message,) = aggregate_messages(prompt, ["red", "blue"], templates)
    assert message.role == "user"
    assert "Name a colour." in message.content
    assert "Response 1:\nred" in message.content
    assert "Response 2:\nblue" in message.content


def test_aggregator_as_system_message_joins_an_existing_one() -> None:
    prompt = Prompt(id="p", messages=(Message("system", "Be kind."), Message("user", "Q?")))
    system, user = aggregate_messages(
        prompt, ["a", "b"], Templates.for_task("instruction"), role="system"
    )
    assert system.role == "system"
    assert system.content.startswith("Be kind.\n\n")
    assert "Response 2:\nb" in system.content
    assert user == Message("user", "Q?")


def test_translation_fills_languages_from_the_prompt_or_defaults() -> None:
    templates = Templates.for_task("translation")
    german = Prompt.from_text("p", "Guten Tag", source_lang="German", target_lang="French")
    (message,) = fresh_messages(german, templates)
    assert "from German into French" in message.content
    assert message.content.endswith("Guten Tag")
    (default,) = fresh_messages(Prompt.from_text("q", "Hola"), templates)
    assert "into English" in default.content
    (refine,) = refine_messages(german, "Bonjour", templates)
    assert "Bonjour" in refine.content
    assert "French" in refine.content
