"""Downloads never trust the archive: each malicious kind is refused, and nothing is left behind.

Every case is checked twice: on :func:`extract_archive` itself, and end to end through
``tinker-actors checkpoint download`` against a scripted service whose archive URL points at
the malicious file (external weights: whose file names are malicious).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import KEY, fake_service, invoke, json_of, one_line_error

from tinker_actors._archive import UnsafeArchiveError, extract_archive

RUN = "session-1:train:0"


def _tar(
    path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz"
) -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"ok") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


# each malicious kind: (builder of the archive, words the refusal must contain)
MALICIOUS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "absolute path": (lambda p: _tar(p, [_file("/tmp/tinker-evil")]), "absolute path"),
    "windows absolute path": (lambda p: _tar(p, [_file("C:/evil")]), "absolute path"),
    "parent reference": (lambda p: _tar(p, [_file("ok.txt"), _file("../evil")]), "'..'"),
    "nested parent reference": (lambda p: _tar(p, [_file("a/../../evil")]), "'..'"),
    "backslash": (lambda p: _tar(p, [_file("..\\evil")]), "backslash"),
    "symbolic link": (
        lambda p: _tar(p, [_special("adapter.safetensors", tarfile.SYMTYPE, "/etc/passwd")]),
        "symbolic link",
    ),
    "hard link": (
        lambda p: _tar(p, [_file("a"), _special("b", tarfile.LNKTYPE, "a")]),
        "hard link",
    ),
    "device": (lambda p: _tar(p, [_special("dev", tarfile.CHRTYPE)]), "special file"),
    "fifo": (lambda p: _tar(p, [_special("pipe", tarfile.FIFOTYPE)]), "special file"),
    "oversize": (lambda p: _tar(p, [_file("big", b"\0" * 4096)]), "more than 1024 bytes"),
    "oversize in total": (
        lambda p: _tar(p, [_file(f"part{i}", b"\0" * 400) for i in range(3)]),
        "more than 1024 bytes",
    ),
    "duplicate member": (lambda p: _tar(p, [_file("a"), _file("a")]), "appears twice"),
    "colliding names": (lambda p: _tar(p, [_file("a"), _file("a/b")]), "collide"),
    "not an archive": (
        lambda p: (p.write_bytes(b"<html>expired</html>"), p)[1],
        "not a readable tar",
    ),
    "truncated": (
        lambda p: (p.write_bytes(_tar(p, [_file("a", b"x" * 800)], "w").read_bytes()[:700]), p)[1],
        "not a readable tar",
    ),
}


@pytest.mark.parametrize("kind", sorted(MALICIOUS))
def test_extract_refuses(kind: str, tmp_path: Path) -> None:
    build, words = MALICIOUS[kind]
    archive = build(tmp_path / "evil.tar.gz")
    destination = tmp_path / "out" / "checkpoint"
    with pytest.raises(UnsafeArchiveError, match="refused the archive") as caught:
        extract_archive(archive, destination, max_bytes=1024)
    assert words in str(caught.value)
    assert not destination.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no staging directory left
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/tinker-evil").exists()


def test_extract_refuses_too_many_members(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "many.tar", [_file(f"f{i}") for i in range(5)], mode="w")
    with pytest.raises(UnsafeArchiveError, match="more than 4 members"):
        extract_archive(archive, tmp_path / "out", max_files=4)


def test_extract_writes_a_good_archive(tmp_path: Path) -> None:
    directory = tarfile.TarInfo("sub")
    directory.type = tarfile.DIRTYPE
    archive = _tar(
        tmp_path / "good.tar.gz",
        [_file("./adapter.json", b"{}"), (directory, None), _file("sub/weights.bin", b"w" * 100)],
    )
    result = extract_archive(archive, tmp_path / "out", max_bytes=1024)
    assert result.files == ["adapter.json", "sub/weights.bin"]
    assert result.total_bytes == 102
    assert (tmp_path / "out" / "sub" / "weights.bin").read_bytes() == b"w" * 100


def _download(url: str, path: str, out: Path, *extra: str) -> list[str]:
    return [
        "checkpoint",
        "download",
        path,
        "-o",
        str(out),
        "--base-url",
        url,
        "--api-key",
        KEY,
        *extra,
    ]


@pytest.mark.parametrize("kind", sorted(MALICIOUS))
def test_download_refuses(kind: str, tmp_path: Path) -> None:
    build, words = MALICIOUS[kind]
    archive = build(tmp_path / "evil.tar.gz")
    out = tmp_path / "out"
    with fake_service() as service:
        service.answer(
            "GET",
            f"/api/v1/training_runs/{RUN}/checkpoints/weights/final/archive",
            200,
            {"url": archive.as_uri(), "expires": "2999-01-01T00:00:00Z"},
        )
        result = invoke(
            _download(service.url, f"tinker://{RUN}/weights/final", out, "--max-size", "1K")
        )
    line = one_line_error(result, 1)
    assert "refused" in line
    assert words in line
    assert list(out.iterdir()) == []
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [("/etc/cron.d/evil", "absolute path"), ("../evil", "'..'"), ("..\\evil", "backslash")],
)
def test_external_weights_with_unsafe_names_are_refused(
    name: str, words: str, tmp_path: Path
) -> None:
    good = tmp_path / "good.bin"
    good.write_bytes(b"weights")
    out = tmp_path / "out"
    with fake_service() as service:
        service.answer(
            "GET",
            f"/api/v1/training_runs/{RUN}/checkpoints/external_weights/final/external_weights_urls",
            200,
            {
                "urls": {"adapter.bin": good.as_uri(), name: good.as_uri()},
                "expires": "2999-01-01T00:00:00Z",
            },
        )
        result = invoke(_download(service.url, f"tinker://{RUN}/external_weights/final", out))
    assert words in one_line_error(result, 1)
    assert list(out.iterdir()) == []  # refused before anything was downloaded
    assert not (tmp_path / "evil").exists()


def test_external_weights_over_the_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 5000)
    out = tmp_path / "out"
    with fake_service() as service:
        service.answer(
            "GET",
            f"/api/v1/training_runs/{RUN}/checkpoints/external_weights/final/external_weights_urls",
            200,
            {"urls": {"a.bin": big.as_uri()}, "expires": "2999-01-01T00:00:00Z"},
        )
        refused = invoke(
            _download(
                service.url, f"tinker://{RUN}/external_weights/final", out, "--max-size", "4K"
            )
        )
        fine = invoke(
            _download(service.url, f"tinker://{RUN}/external_weights/final", out, "-f", "json")
        )
    assert "larger than 4096 bytes" in one_line_error(refused, 1)
    data = json_of(fine)
    assert data["files"] == ["a.bin"]
    assert data["size_bytes"] == 5000
    assert [p.name for p in out.iterdir()] == ["session-1_train_0_external_weights_final"]


def test_an_expired_archive_url(tmp_path: Path) -> None:
    with fake_service() as service:
        service.answer(
            "GET",
            f"/api/v1/training_runs/{RUN}/checkpoints/weights/final/archive",
            200,
            {"url": (tmp_path / "gone.tar").as_uri(), "expires": "2999-01-01T00:00:00Z"},
        )
        result = invoke(_download(service.url, f"tinker://{RUN}/weights/final", tmp_path / "out"))
    assert "No such file" in one_line_error(result, 1)
