"""agent_specs for running servers, and the rows of `toa models list`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toa.agents import AgentPool
from toa.errors import ConfigError
from toa.local import (
    BUNDLED_MODELS,
    GEMMA_MATH_STOP,
    ModelEntry,
    PackageLocator,
    ServerInfo,
    agent_specs,
    ensure_model,
    get_model,
    model_status,
    start_servers,
    user_model,
)
from toa.local.assemble import file_sha256
from toa.local.status import hash_state
from toa.types import SamplingParams


def _info(name: str, port: int = 8001) -> ServerInfo:
    return ServerInfo(name=name, base_url=f"http://127.0.0.1:{port}/v1", pid=1, port=port)


def test_specs_of_the_bundled_models() -> None:
    servers = {n: _info(n, 8000 + i) for i, n in enumerate(BUNDLED_MODELS)}
    specs = {s.name: s for s in agent_specs(servers)}
    assert list(specs) == list(BUNDLED_MODELS)
    qwen = specs["qwen2.5-coder-0.5b"]
    assert qwen.mode == "chat"
    assert qwen.model == "qwen2.5-coder-0.5b"
    assert qwen.base_urls == ("http://127.0.0.1:8001/v1",)
    assert qwen.params_b == pytest.approx(0.494)
    assert qwen.max_concurrency == 1
    assert qwen.timeout_s >= 300
    assert qwen.sampling.stop == ()
    assert dict(qwen.extra_body) == {}
    gemma = specs["gemma3-270m"]
    assert gemma.mode == "completion"
    assert gemma.prompt_template == get_model("gemma3-270m").prompt_template
    assert gemma.sampling.stop == GEMMA_MATH_STOP
    assert dict(gemma.extra_body) == {"stop": list(GEMMA_MATH_STOP)}
    assert [s.params_b for s in specs.values()] == [0.135, 0.494, 0.268, 1.54]


def test_spec_options_and_user_servers() -> None:
    sampling = SamplingParams(temperature=0.2, max_tokens=64, stop=("###",), seed=3)
    remote = user_model("api", base_url="http://h:1/v1", model_id="served-name", params_b=7.0)
    info = ServerInfo(name="api", base_url="http://h:1/v1", entry=remote)
    gemma = _info("gemma3-270m")
    api, g = agent_specs([info, gemma], sampling=sampling, timeout_s=50, max_concurrency=2)
    assert api.model == "served-name"
    assert api.sampling == sampling
    assert (api.timeout_s, api.max_concurrency, api.params_b) == (50, 2, 7.0)
    assert g.sampling.stop == ("###", *GEMMA_MATH_STOP)
    assert g.sampling.max_tokens == 64
    with pytest.raises(ConfigError, match="no model entry"):
        agent_specs([_info("unknown")])


@pytest.mark.usefixtures("fake_llama")
async def test_specs_drive_the_real_client(gguf_file: Path) -> None:
    chat = user_model("chatty", path=gguf_file)
    base = user_model(
        "basey", path=gguf_file, mode="completion",
        prompt_template="Q: {prompt}\nA:", stop=("\nQ:",),
    )  # fmt: skip
    servers = start_servers([chat, base], ready_timeout_s=30)
    async with AgentPool(agent_specs(servers)) as pool:
        reply = await pool["chatty"].generate("hello")
        assert reply.text.startswith("chat ")
        assert '"model": "chatty"' in reply.text
        other = await pool["basey"].generate("2+2?", sampling=SamplingParams(max_tokens=5))
        assert other.text.startswith("completion ")
        assert '"stop": ["\\nQ:"]' in other.text  # the template's stops survive a caller's sampling
        assert "Q: 2+2?\\nA:" in other.text


def test_hash_states(
    tiny_model: ModelEntry, locator: PackageLocator, fake_site: Path, gguf_file: Path
) -> None:
    empty = PackageLocator([fake_site / "nothing"])
    assert hash_state(tiny_model, locator=empty)[0] == "missing-package"
    assert hash_state(tiny_model, locator=locator)[0] == "not-assembled"
    path = ensure_model(tiny_model, locator=locator)
    assert hash_state(tiny_model, locator=locator) == ("verified", path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert hash_state(tiny_model, locator=locator, verify=False)[0] == "unverified"
    assert hash_state(tiny_model, locator=locator)[0] == "verified"
    path.write_bytes(b"x" * path.stat().st_size)
    assert hash_state(tiny_model, locator=locator)[0] == "mismatch"
    (fake_site / "toa_fake_part2/data/c.bin").write_bytes(b"short")
    assert hash_state(tiny_model, locator=locator)[0] == "mismatch"
    assert hash_state(user_model("u", path=gguf_file))[0] == "unchecked"
    good = user_model("u", path=gguf_file, sha256=file_sha256(gguf_file))
    assert hash_state(good)[0] == "verified"
    assert hash_state(user_model("u", path=gguf_file.with_name("no.gguf")))[0] == "missing-file"
    assert hash_state(user_model("r", base_url="http://h:1/v1")) == ("remote", None)


def test_model_status_lists_every_bundled_model(tmp_path: Path) -> None:
    rows = model_status(locator=PackageLocator([tmp_path / "nothing"]))
    assert [r.name for r in rows] == list(BUNDLED_MODELS)
    for row in rows:
        assert row.hash_state == "missing-package"
        assert row.server_state == "down"
        assert row.packages
        assert row.source
    assert rows[-1].optional


@pytest.mark.usefixtures("fake_llama")
def test_model_status_shows_running_servers(
    tiny_model: ModelEntry, locator: PackageLocator
) -> None:
    servers = start_servers([tiny_model], locator=locator, ready_timeout_s=30)
    (row,) = model_status([tiny_model], locator=locator)
    assert (row.hash_state, row.server_state) == ("verified", "up")
    assert (row.port, row.pid) == (servers["tiny"].port, servers["tiny"].pid)
    assert row.log_path == servers["tiny"].log_path
    assert row.size_bytes == tiny_model.size
