"""Installing local tokenizers into a Hugging Face hub cache, by model name and alias."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tokenizers", reason="the server extra builds the tokenizers")

from click.testing import CliRunner

from tinker_actors.cli._commands import cli
from tinker_actors.errors import InvalidInputError
from tinker_actors.local import (
    ForeignRepositoryError,
    hub_cache_dir,
    install_tokenizers,
)
from tinker_actors.local._hf_cache import MARKER_FILE, repository_dir
from tinker_actors.local._images import preprocessor_config

QWEN = "Qwen/Qwen3.5-9B-Base"


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizer-build")


def _snapshot(repo: Path) -> Path:
    revision = (repo / "refs" / "main").read_text()
    assert len(revision) == 40
    assert int(revision, 16) >= 0
    return repo / "snapshots" / revision


def test_installs_models_and_aliases_in_the_hub_layout(tmp_path: Path, build_dir: Path) -> None:
    installed = install_tokenizers(
        tmp_path, models=["local/tiny"], aliases={QWEN: "local/tiny"}, build_dir=build_dir
    )
    assert [(e.name, e.model) for e in installed] == [
        ("local/tiny", "local/tiny"),
        (QWEN, "local/tiny"),
    ]
    for entry in installed:
        snapshot = _snapshot(repository_dir(tmp_path, entry.name))
        assert snapshot == entry.snapshot
        names = sorted(p.name for p in snapshot.iterdir())
        assert names == sorted(
            [
                "config.json",
                "preprocessor_config.json",
                "special_tokens_map.json",
                "tokenizer.json",
                "tokenizer_config.json",
                MARKER_FILE,
            ]
        )
        config = json.loads((snapshot / "config.json").read_text())
        assert config["vocab_size"] == 4096
        # the server's image counting rule (tests/unit/test_images.py checks the processor)
        assert json.loads((snapshot / "preprocessor_config.json").read_text()) == (
            preprocessor_config()
        )
    tiny, qwen = (e.snapshot for e in installed)
    assert (tiny / "tokenizer.json").read_bytes() == (qwen / "tokenizer.json").read_bytes()
    assert repository_dir(tmp_path, QWEN).name == "models--Qwen--Qwen3.5-9B-Base"


def test_reinstalling_is_idempotent_and_replaces_only_our_snapshots(
    tmp_path: Path, build_dir: Path
) -> None:
    first = install_tokenizers(tmp_path, models=["local/tiny"], build_dir=build_dir)
    again = install_tokenizers(tmp_path, models=["local/tiny"], build_dir=build_dir)
    assert first == again
    repo = repository_dir(tmp_path, "local/tiny")
    stale = repo / "snapshots" / ("0" * 40)
    stale.mkdir()
    (stale / MARKER_FILE).write_text("{}")
    install_tokenizers(tmp_path, models=["local/tiny"], build_dir=build_dir)
    assert not stale.exists()
    assert [p.name for p in (repo / "snapshots").iterdir()] == [first[0].snapshot.name]


def test_a_downloaded_repository_is_left_alone_unless_forced(
    tmp_path: Path, build_dir: Path
) -> None:
    repo = repository_dir(tmp_path, QWEN)
    real = repo / "snapshots" / ("a" * 40)
    real.mkdir(parents=True)
    (real / "config.json").write_text('{"model_type": "qwen3_5"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    with pytest.raises(ForeignRepositoryError, match="left alone") as info:
        install_tokenizers(tmp_path, models=[], aliases={QWEN: "local/tiny"}, build_dir=build_dir)
    assert isinstance(info.value, InvalidInputError)
    assert (repo / "refs" / "main").read_text() == "a" * 40
    assert (real / "config.json").is_file()

    (installed,) = [
        e
        for e in install_tokenizers(
            tmp_path, models=[], aliases={QWEN: "local/tiny"}, build_dir=build_dir, force=True
        )
        if e.name == QWEN
    ]
    assert _snapshot(repo) == installed.snapshot
    assert not real.exists()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"models": ["local/huge"]}, "unknown local model 'local/huge'"),
        ({"aliases": {"a/b/c": "local/tiny"}}, "cannot name a Hugging Face repository"),
        ({"aliases": {"x--y/z": "local/tiny"}}, "cannot name a Hugging Face repository"),
        ({"aliases": {"q/q": "nope"}}, "not a local model"),
    ],
)
def test_bad_requests_write_nothing(
    tmp_path: Path, build_dir: Path, kwargs: dict[str, object], needle: str
) -> None:
    target = tmp_path / "hub"
    with pytest.raises(InvalidInputError, match=needle):
        install_tokenizers(target, build_dir=build_dir, **kwargs)  # type: ignore[arg-type]
    assert not target.exists()


def test_hub_cache_dir_follows_huggingface_hub(tmp_path: Path) -> None:
    home = Path.home()
    assert hub_cache_dir({}) == home / ".cache" / "huggingface" / "hub"
    assert hub_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")
    assert hub_cache_dir({"HF_HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/h/hub")
    assert hub_cache_dir({"HF_HUB_CACHE": "/c", "HF_HOME": "/h"}) == Path("/c")
    assert hub_cache_dir({"HUGGINGFACE_HUB_CACHE": "/old", "HF_HOME": "/h"}) == Path("/old")


def test_cli_installs_where_told_and_says_how_to_load(tmp_path: Path) -> None:
    catalogue = tmp_path / "models.toml"
    catalogue.write_text('[aliases]\n"meta-llama/Llama-3.2-1B" = "local/small"\n')
    result = CliRunner().invoke(
        cli,
        [
            "tokenizers",
            "install",
            "--cache-dir",
            str(tmp_path / "hub"),
            "--model",
            "local/tiny",
            "--model-alias",
            f"{QWEN}=local/tiny",
            "--catalogue",
            str(catalogue),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{QWEN} (alias of local/tiny): {tmp_path / 'hub'}" in result.output
    assert "meta-llama/Llama-3.2-1B (alias of local/small)" in result.output
    assert f"HF_HUB_CACHE={tmp_path / 'hub'} HF_HUB_OFFLINE=1" in result.output
    for name in ("local/tiny", "local/small", QWEN, "meta-llama/Llama-3.2-1B"):
        assert (repository_dir(tmp_path / "hub", name) / "refs" / "main").is_file()


def test_cli_refuses_a_bad_alias_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinker_actors.cli",
            "tokenizers",
            "install",
            "--cache-dir",
            str(tmp_path / "hub"),
            "--model-alias",
            f"{QWEN}=local/nope",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "'local/nope', which is not a local model" in done.stderr
    assert not (tmp_path / "hub").exists()


@pytest.mark.slow
def test_transformers_loads_them_by_name_offline(tmp_path: Path, build_dir: Path) -> None:
    pytest.importorskip("transformers")
    install_tokenizers(
        tmp_path, models=["local/tiny"], aliases={QWEN: "local/tiny"}, build_dir=build_dir
    )
    script = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    tok = AutoTokenizer.from_pretrained(name)\n"
        "    out[name] = [tok.eos_token_id, tok.decode(tok.encode('User: 2 + 2 = 4', add_special_tokens=False))]\n"
        "print(json.dumps(out))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
    }
    env.update(HF_HUB_CACHE=str(tmp_path), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, QWEN, "local/tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {QWEN: [0, "User: 2 + 2 = 4"], "local/tiny": [0, "User: 2 + 2 = 4"]}


def test_accepts_str_paths(tmp_path: Path, build_dir: Path) -> None:
    # regression: a str cache_dir (what a user types, or reads from os.environ) failed on
    # `/` and `.mkdir` because only Path was handled
    installed = install_tokenizers(
        str(tmp_path / "hub"), models=["local/tiny"], aliases={QWEN: "local/tiny"},
        build_dir=str(build_dir),
    )  # fmt: skip
    assert [e.snapshot.parent.parent for e in installed] == [
        repository_dir(tmp_path / "hub", "local/tiny"),
        repository_dir(tmp_path / "hub", QWEN),
    ]
    assert all((e.snapshot / "tokenizer.json").is_file() for e in installed)
