"""Install local models' tokenizers into a Hugging Face hub cache, so they load by model name.

Client code looks tokenizers up by model name (``AutoTokenizer.from_pretrained("Qwen/Qwen3-8B")``;
tinker-cookbook ignores ``get_info``'s ``tokenizer_id``), and offline
(``HF_HUB_OFFLINE=1``) that only works when the hub cache already holds the repository. This
module writes each local model's tokenizer there, under the model's name and under each alias:

    <cache>/models--Qwen--Qwen3.5-9B-Base/refs/main              -> the revision below
    <cache>/models--Qwen--Qwen3.5-9B-Base/snapshots/<revision>/   tokenizer.json,
        tokenizer_config.json, special_tokens_map.json, config.json (transformers needs one
        to resolve the repository), preprocessor_config.json (how many tokens an image takes,
        :mod:`._images`), tinker_actors.json (marks the snapshot as ours)

Nothing here runs unless asked: the ``tinker-actors tokenizers install`` command and
:func:`install_tokenizers` are the only writers, and the target is the ``cache_dir`` given or
the hub cache the environment names (``HF_HUB_CACHE``, ``HF_HOME``, ...), as
``huggingface_hub`` resolves it. A repository that holds a snapshot we did not write (a real
download) is never touched unless ``force`` is set.

Example::

    installed = install_tokenizers(tmp_path / "hub", aliases={"Qwen/Qwen3.5-9B-Base": "local/tiny"})
    # then, with HF_HUB_CACHE=tmp_path/"hub" HF_HUB_OFFLINE=1:
    # AutoTokenizer.from_pretrained("Qwen/Qwen3.5-9B-Base")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._catalogue import CATALOGUE, check_aliases
from tinker_actors.local._images import preprocessor_config

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tinker_actors.local._catalogue import BaseModelSpec

__all__ = [
    "MARKER_FILE",
    "ForeignRepositoryError",
    "InstalledTokenizer",
    "hub_cache_dir",
    "install_tokenizers",
    "repository_dir",
]

#: The file that marks a snapshot as written by tinker_actors (and records what it holds).
MARKER_FILE = "tinker_actors.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class ForeignRepositoryError(InvalidInputError):
    """The cache already holds that repository from elsewhere (a real download)."""


@dataclass(frozen=True)
class InstalledTokenizer:
    """One repository written: ``name`` loads ``model``'s tokenizer from ``snapshot``."""

    name: str
    model: str
    snapshot: Path


def hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The hub cache ``huggingface_hub`` uses in this environment.

    ``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``.
    """
    env = os.environ if environ is None else environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(os.path.expandvars(os.path.expanduser(env[key])))
    if env.get("HF_HOME"):
        home = Path(os.path.expandvars(os.path.expanduser(env["HF_HOME"])))
    else:
        xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        home = Path(xdg) / "huggingface"
    return home / "hub"


def repository_dir(cache_dir: Path, name: str) -> Path:
    """The directory of model repository ``name`` (``org/model``) in a hub cache."""
    return cache_dir / ("models--" + name.replace("/", "--"))


def _check_repo_name(name: str) -> None:
    parts = name.split("/")
    if len(parts) > 2 or not all(parts) or any(p in (".", "..") or "--" in p for p in parts):
        raise InvalidInputError(
            f"{name!r} cannot name a Hugging Face repository; use 'org/model' or 'model'"
        )


def _revision(files: Mapping[str, bytes]) -> str:
    """A content digest shaped like a commit hash (40 hex digits), as snapshot names are."""
    h = hashlib.sha1(usedforsecurity=False)
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def _config(spec: BaseModelSpec) -> dict[str, object]:
    # transformers reads config.json only to resolve the repository; the tokenizer class comes
    # from tokenizer_config.json. The shape is the local model's, for tools that look.
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.d_model,
        "num_hidden_layers": spec.n_layers,
        "num_attention_heads": spec.n_heads,
        "num_key_value_heads": spec.kv_heads,
        "intermediate_size": spec.d_ff,
        "max_position_embeddings": spec.context_length,
        "rope_theta": spec.rope_base,
        "rms_norm_eps": spec.norm_eps,
        "tie_word_embeddings": spec.tied_embeddings,
        "eos_token_id": spec.eos_ids[0],
    }


def _is_ours(repo: Path) -> bool:
    """Whether every snapshot in ``repo`` (if any) was written here."""
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return not (repo / "refs").exists()
    return all((snap / MARKER_FILE).is_file() for snap in snapshots.iterdir())


def _write_repo(
    cache_dir: Path, name: str, model: str, files: Mapping[str, bytes], *, force: bool
) -> InstalledTokenizer:
    repo = repository_dir(cache_dir, name)
    if repo.exists() and not _is_ours(repo):
        if not force:
            raise ForeignRepositoryError(
                f"{repo} already holds {name!r} from elsewhere (a real download?); it was left "
                "alone. Use another cache directory (--cache-dir, HF_HUB_CACHE), or pass "
                "force to replace it"
            )
        shutil.rmtree(repo)
    marker = json.dumps({"name": name, "model": model, "files": sorted(files)}, indent=1)
    content = {**files, MARKER_FILE: marker.encode()}
    revision = _revision(content)
    snapshot = repo / "snapshots" / revision
    if not (snapshot / MARKER_FILE).is_file():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        # write beside, then rename: a reader never sees a half-written snapshot
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=snapshot.parent))
        try:
            for file_name, data in content.items():
                (staging / file_name).write_bytes(data)
            try:
                os.rename(staging, snapshot)
            except OSError:
                if not (snapshot / MARKER_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    refs = repo / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=refs)
    with os.fdopen(fd, "w") as handle:
        handle.write(revision)
    os.replace(tmp, refs / "main")
    # older snapshots of ours are stale once main moved on; a foreign one was refused above
    for other in (repo / "snapshots").iterdir():
        if other != snapshot and (other / MARKER_FILE).is_file():
            shutil.rmtree(other, ignore_errors=True)
    return InstalledTokenizer(name=name, model=model, snapshot=snapshot)


def install_tokenizers(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    models: Iterable[str] | None = None,
    aliases: Mapping[str, str] | None = None,
    build_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> list[InstalledTokenizer]:
    """Write local models' tokenizers into a hub cache under their names and aliases.

    Args:
        cache_dir: the hub cache to write (the directory ``HF_HUB_CACHE`` names), a ``Path``
            or a string; default :func:`hub_cache_dir` of this environment.
        models: catalogue models to install (default: every model, and every alias target).
        aliases: extra names, ``{"Qwen/Qwen3.5-9B-Base": "local/tiny"}``; each is installed
            with its model's tokenizer (its model is installed too).
        build_dir: where tokenizers are built once (default: the server's cache,
            ``~/.cache/tinker-actors/tokenizers``).
        force: replace repositories that hold snapshots written by someone else.

    Returns:
        One entry per repository written, models first, then aliases.

    Raises:
        InvalidInputError: an unknown model, a bad alias, a name that cannot be a repository,
            or (:class:`ForeignRepositoryError`) a repository downloaded from the hub.
    """
    from tinker_actors.local._core import default_cache_dir
    from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir

    checked = check_aliases(aliases or {})
    wanted = list(CATALOGUE) if models is None else list(models)
    for model in wanted:
        if model not in CATALOGUE:
            raise InvalidInputError(
                f"unknown local model {model!r}; install one of: {', '.join(sorted(CATALOGUE))} "
                "(give other names as aliases, NAME=MODEL)"
            )
    for target in checked.values():
        if target not in wanted:
            wanted.append(target)
    names = [(m, m) for m in wanted] + list(checked.items())
    for name, _ in names:
        _check_repo_name(name)
    # str paths are as welcome as Path ones (os.fspath also takes any PathLike)
    target_dir = Path(os.fspath(cache_dir)) if cache_dir is not None else hub_cache_dir()
    build = (
        Path(os.fspath(build_dir)) if build_dir is not None else default_cache_dir() / "tokenizers"
    )
    files: dict[str, dict[str, bytes]] = {}
    for model in wanted:
        spec = CATALOGUE[model]
        source = ensure_model_tokenizer_dir(build, spec)
        files[model] = {f: (source / f).read_bytes() for f in _TOKENIZER_FILES}
        files[model]["config.json"] = json.dumps(_config(spec), indent=1).encode()
        # AutoImageProcessor's counting rule, so renderers size ImageChunks as the server does
        files[model]["preprocessor_config.json"] = json.dumps(
            preprocessor_config(), indent=1
        ).encode()
    target_dir.mkdir(parents=True, exist_ok=True)
    return [
        _write_repo(target_dir, name, model, files[model], force=force) for name, model in names
    ]
