"""Server lifecycle against a stand-in llama_cpp.server: start, reuse, stale, stop, failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toa.local import (
    LocalModelError,
    ModelEntry,
    ServerStartError,
    start_servers,
    stop_servers,
    user_model,
)
from toa.local.procs import (
    fetch_model_ids,
    is_server_process,
    launch_detached,
    log_tail,
    pick_free_port,
    pid_alive,
    terminate,
)
from toa.local.servers import default_threads, server_command
from toa.local.state import SERVER_MODULE, read_server

pytestmark = pytest.mark.usefixtures("fake_llama")


def _state(tmp_path: Path, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / "state" / f"{name}.json").read_text())
    return data


def test_pick_free_port_gives_a_bindable_loopback_port() -> None:
    port = pick_free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_liveness_and_termination_of_a_detached_process(tmp_path: Path) -> None:
    log = tmp_path / "sleeper.log"
    pid = launch_detached(
        [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"], log
    )
    assert pid_alive(pid)
    assert os.getpgid(pid) == pid  # its own session and process group
    assert not is_server_process(pid, SERVER_MODULE, 1)
    deadline = time.monotonic() + 10
    while "hi" not in log_tail(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "hi" in log_tail(log)  # its output goes to the log
    assert terminate(pid, grace_s=5)
    assert not pid_alive(pid)


def test_a_dead_pid_is_not_alive() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        pid = child.pid
    assert not pid_alive(pid)


def test_log_tail_and_unreachable_servers(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("a" * 5000 + "END")
    assert log_tail(log, 10) == "a" * 7 + "END"
    assert log_tail(tmp_path / "missing.log") == ""
    assert fetch_model_ids(f"http://127.0.0.1:{pick_free_port()}/v1", timeout_s=0.5) is None


def test_default_threads_share_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_threads(1) == cores
    assert default_threads(cores * 4) == 1


def test_server_command_is_loopback_with_the_model_alias(
    tiny_model: ModelEntry, tmp_path: Path
) -> None:
    command = server_command(tiny_model, tmp_path / "m.gguf", 8123, 1, 2048, False)
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert flags == {
        "--model": str(tmp_path / "m.gguf"),
        "--model_alias": "tiny",
        "--host": "127.0.0.1",
        "--port": "8123",
        "--n_ctx": "2048",
        "--n_threads": "1",
        "--n_threads_batch": "1",
        "--logits_all": "False",
    }
    assert "--chat_format" not in command  # chat models use their GGUF's template


def test_start_is_idempotent_and_stop_cleans_up(gguf_file: Path, tmp_path: Path) -> None:
    models = [user_model("m1", path=gguf_file), user_model("m2", path=gguf_file, mode="completion")]
    servers = start_servers(models, n_threads=1, ready_timeout_s=30)
    assert list(servers) == ["m1", "m2"]
    first = servers["m1"]
    assert first.pid is not None
    assert first.port is not None
    assert first.base_url == f"http://127.0.0.1:{first.port}/v1"
    assert fetch_model_ids(first.base_url) == ["m1"]
    assert _state(tmp_path, "m1")["pid"] == first.pid
    assert first.log_path == tmp_path / "state" / "m1.log"
    assert "fake llama serving m1" in log_tail(first.log_path)
    assert servers["m1"].port != servers["m2"].port
    again = start_servers(models, ready_timeout_s=30)
    assert again["m1"].pid == first.pid  # reused, not restarted
    assert read_server(models[0])[0] == "up"
    assert sorted(stop_servers()) == ["m1", "m2"]
    assert not pid_alive(first.pid)
    assert read_server(models[0]) == ("down", None)
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [".lock", "m1.log", "m2.log"]


def test_stale_state_is_reported_and_cleaned(gguf_file: Path, tmp_path: Path) -> None:
    model = user_model("m1", path=gguf_file)
    with subprocess.Popen([sys.executable, "-c", "pass"]) as dead:
        pass
    state = tmp_path / "state"
    state.mkdir()
    stale = {"name": "m1", "base_url": "http://127.0.0.1:9/v1", "pid": dead.pid, "port": 9}
    (state / "m1.json").write_text(json.dumps(stale))
    assert read_server(model)[0] == "stale"
    servers = start_servers([model], ready_timeout_s=30)
    assert servers["m1"].pid != dead.pid
    assert read_server(model)[0] == "up"
    (state / "m2.json").write_text(json.dumps(stale | {"name": "m2"}))
    (state / "m3.json").write_text("{not json")
    assert sorted(stop_servers()) == ["m1", "m2"]
    assert not list(state.glob("*.json"))


def test_a_busy_server_is_reused_and_a_loading_one_reported(
    gguf_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "busy"
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "busy-on-flag")
    monkeypatch.setenv("FAKE_LLAMA_FLAG", str(flag))
    model = user_model("m", path=gguf_file)
    first = start_servers([model], ready_timeout_s=30)["m"]
    flag.write_text("generating")
    assert read_server(model)[0] == "busy"
    started = time.monotonic()
    assert start_servers([model], ready_timeout_s=30)["m"].pid == first.pid
    assert time.monotonic() - started < 10
    stop_servers()
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "hang")
    pid = launch_detached(
        [sys.executable, "-m", "llama_cpp.server", "--port", "9"], tmp_path / "h.log"
    )
    state = {"name": "m", "base_url": "http://127.0.0.1:9/v1", "pid": pid, "port": 9}
    (tmp_path / "state" / "m.json").write_text(json.dumps(state))
    assert read_server(model)[0] == "starting"
    assert stop_servers() == ["m"]
    assert not pid_alive(pid)


def test_a_server_for_another_file_is_replaced(gguf_file: Path, tmp_path: Path) -> None:
    first = start_servers([user_model("m", path=gguf_file)], ready_timeout_s=30)["m"]
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF2")
    second = start_servers([user_model("m", path=other)], ready_timeout_s=30)["m"]
    assert second.pid != first.pid
    assert first.pid is not None
    assert not pid_alive(first.pid)
    assert second.model_path == other


def test_a_server_with_other_settings_is_replaced(gguf_file: Path) -> None:
    model = user_model("m", path=gguf_file)
    first = start_servers([model], ready_timeout_s=30)["m"]
    assert (first.n_ctx, first.logprobs) == (2048, False)
    assert start_servers([model], n_threads=2, ready_timeout_s=30)["m"].pid == first.pid
    second = start_servers([model], logprobs=True, ready_timeout_s=30)["m"]
    assert second.pid != first.pid
    assert second.logprobs is True
    judge = user_model("j", path=gguf_file, logprobs=True)
    assert start_servers([judge], ready_timeout_s=30)["j"].logprobs is True
    assert start_servers([model], n_ctx=4096, ready_timeout_s=30)["m"].n_ctx == 4096


def test_a_crashing_server_is_reported_with_its_log(
    gguf_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "crash")
    with pytest.raises(ServerStartError) as caught:
        start_servers([user_model("m", path=gguf_file)], ready_timeout_s=30)
    message = str(caught.value)
    assert "exited during start-up" in message
    assert str(tmp_path / "state" / "m.log") in message
    assert "boom, model failed to load" in message
    assert not (tmp_path / "state" / "m.json").exists()


def test_a_server_that_never_answers_is_killed(
    gguf_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "hang")
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"did not answer within 1\.5 s"):
        start_servers([user_model("m", path=gguf_file)], ready_timeout_s=1.5)
    assert time.monotonic() - started < 20
    assert not (tmp_path / "state" / "m.json").exists()


def test_a_lost_port_race_is_retried(
    gguf_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "port-once")
    monkeypatch.setenv("FAKE_LLAMA_FLAG", str(tmp_path / "flag"))
    servers = start_servers([user_model("m", path=gguf_file)], ready_timeout_s=30)
    assert fetch_model_ids(servers["m"].base_url) == ["m"]


def test_sigterm_is_escalated_to_sigkill(gguf_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLAMA_BEHAVIOUR", "ignore-term")
    info = start_servers([user_model("m", path=gguf_file)], ready_timeout_s=30)["m"]
    assert info.pid is not None
    started = time.monotonic()
    assert terminate(info.pid, grace_s=0.5, kill_wait_s=5)
    assert 0.4 < time.monotonic() - started < 5
    assert stop_servers() == ["m"]  # the state file of the killed server is still cleaned


def test_remote_servers_are_checked_not_started(gguf_file: Path) -> None:
    running = start_servers([user_model("m", path=gguf_file)], ready_timeout_s=30)["m"]
    remote = user_model("api", base_url=running.base_url)
    assert start_servers([remote])["api"].base_url == running.base_url
    assert read_server(remote) == ("up", start_servers([remote])["api"])
    with pytest.raises(ServerStartError, match="no OpenAI-compatible server"):
        start_servers([user_model("gone", base_url=f"http://127.0.0.1:{pick_free_port()}/v1")])


def test_missing_llama_cpp_is_explained(gguf_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as metadata

    real = metadata.distribution

    def without_llama(name: str) -> metadata.Distribution:
        if name == "llama-cpp-python":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without_llama)
    with pytest.raises(LocalModelError, match="make install-local"):
        start_servers([user_model("m", path=gguf_file)])
