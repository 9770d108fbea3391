"""`smallfleet fetch` unpacks as safely on a Python without tarfile's "data" filter.

The operator image runs Debian bookworm's Python 3.11.2, which predates PEP 706
(3.11.4), so `fetch.data_only` does the filter's work there. Each case runs
twice on real archives: with this Python's own filter and with it removed, as
on the image's Python, and both must give the same answer.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from smallfleet.fetch import FetchError, unpack


def archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def member(
    name: str, *, mode: int = 0o644, link: str = "", kind: bytes = tarfile.REGTYPE
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.type, info.linkname = mode, kind, link
    info.uid = info.gid = 4242
    return info


@pytest.fixture(params=["with the filter", "without the filter"])
def python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "without the filter":
        monkeypatch.delattr(tarfile, "data_filter")
    return str(request.param)


def test_a_symlink_chain_out_of_the_model_directory_is_refused(python: str, tmp_path: Path) -> None:
    # By name every member stays inside; on disk, with b -> ., c -> b/.. is the model
    # directory and d -> c/.. its parent.
    path = archive(
        tmp_path / "chain.tar.gz",
        [
            (member("1/b", kind=tarfile.SYMTYPE, link="."), b""),
            (member("1/c", kind=tarfile.SYMTYPE, link="b/.."), b""),
            (member("1/d", kind=tarfile.SYMTYPE, link="c/.."), b""),
            (member("1/d/evil.py"), b"print('outside')\n"),
        ],
    )
    into = tmp_path / "models" / "m"
    into.mkdir(parents=True)
    with pytest.raises(FetchError, match="bad archive"):
        unpack(path, "https://example.test/chain.tar.gz", into, None)
    assert not (tmp_path / "models" / "evil.py").exists()
    assert not list(tmp_path.rglob("evil.py"))


def test_modes_lose_special_and_group_write_bits(python: str, tmp_path: Path) -> None:
    path = archive(
        tmp_path / "modes.tar.gz",
        [
            (member("1/model.py", mode=0o4777), b"x = 1\n"),
            (member("1/config.pbtxt", mode=0o066), b'name: "m"\n'),
        ],
    )
    into = tmp_path / "m"
    into.mkdir()
    unpack(path, "https://example.test/modes.tar.gz", into, None)
    assert stat.S_IMODE((into / "1" / "model.py").stat().st_mode) == 0o755
    assert stat.S_IMODE((into / "1" / "config.pbtxt").stat().st_mode) == 0o644
    assert (into / "1" / "model.py").stat().st_uid == os.getuid()
