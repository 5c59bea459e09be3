"""Checkpoints, training runs and ``tinker://`` paths.

Every saved checkpoint has a path ``tinker://<training_run_id>/<segment>/<name>`` where the
segment names its kind: ``weights`` (a resumable training checkpoint), ``sampler_weights``
(weights for sampling) or ``external_weights`` (an export that can be downloaded). The REST
API addresses a checkpoint by its run and ``checkpoint_id = "<segment>/<name>"``::

    >>> path = TinkerPath.parse("tinker://run:train:0/weights/step-10")
    >>> path.training_run_id, path.checkpoint_type, path.checkpoint_id
    ('run:train:0', 'training', 'weights/step-10')
    >>> str(path)
    'tinker://run:train:0/weights/step-10'

:class:`ParsedCheckpointTinkerPath` is 0.38's form of the same parse, kept to its exact rules
(it allows empty parts, which :class:`TinkerPath` refuses); both share one splitter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal, TypeAlias
from urllib.parse import quote

import msgspec

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct
from tinker_actors.types._ttl import check_ttl_seconds

__all__ = [
    "ArchiveUrlResponse",
    "Checkpoint",
    "CheckpointType",
    "CheckpointsListResponse",
    "Cursor",
    "ExternalWeightsUrlsResponse",
    "ParsedCheckpointTinkerPath",
    "SetCheckpointTtlRequest",
    "TinkerPath",
    "TrainingRun",
    "TrainingRunsResponse",
]

CheckpointType: TypeAlias = Literal["training", "sampler", "external"]
"""A checkpoint's kind: resumable training state, sampler weights, or a downloadable export."""

TINKER_SCHEME: Final = "tinker://"
_SEGMENT_TO_TYPE: Final[dict[str, CheckpointType]] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}
_TYPE_TO_SEGMENT: Final[dict[CheckpointType, str]] = {t: s for s, t in _SEGMENT_TO_TYPE.items()}


_EXPECTED: Final = (
    "expected tinker://<training_run_id>/<segment>/<name> with segment one of "
    f"{', '.join(_SEGMENT_TO_TYPE)}"
)
_CONSOLE_URL: Final = "https://tinker.thinkingmachines.ai"


def split_tinker_path(path: object) -> tuple[str, CheckpointType, str]:
    """Split a ``tinker://`` path into run id, checkpoint kind and name, as 0.38 does.

    The path must start with ``tinker://`` and have exactly three ``/``-separated parts after
    it, the middle one a known segment; the parts may be empty (:meth:`TinkerPath.parse` adds
    that check).

    Raises:
        InvalidInputError: the path does not have that form.
    """
    if not isinstance(path, str) or not path.startswith(TINKER_SCHEME):
        raise InvalidInputError(f"not a tinker:// path: {path!r}; {_EXPECTED}")
    parts = path[len(TINKER_SCHEME) :].split("/")
    if len(parts) != 3:
        raise InvalidInputError(
            f"malformed tinker path {path!r}: it needs exactly three parts after tinker://; "
            f"{_EXPECTED}"
        )
    run, segment, name = parts
    checkpoint_type = _SEGMENT_TO_TYPE.get(segment)
    if checkpoint_type is None:
        raise InvalidInputError(f"unknown checkpoint segment {segment!r} in {path!r}; {_EXPECTED}")
    return run, checkpoint_type, name


def checkpoint_console_url(tinker_path: str) -> str:
    """Return the Tinker console page of the checkpoint at ``tinker_path``.

    Raises:
        InvalidInputError: ``tinker_path`` is not a tinker:// checkpoint path.
    """
    parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
    return (
        f"{_CONSOLE_URL}/checkpoints/{quote(parsed.training_run_id, safe='')}/"
        f"{quote(parsed.checkpoint_id, safe='')}"
    )


def checkpoint_playground_url(tinker_path: str) -> str:
    """Return a Tinker playground URL that opens the sampler checkpoint at ``tinker_path``."""
    return f"{_CONSOLE_URL}/playground?mode=checkpoint&checkpoint={quote(tinker_path, safe='')}"


class TinkerPath(msgspec.Struct, frozen=True):
    """A parsed ``tinker://<training_run_id>/<segment>/<name>`` checkpoint path."""

    training_run_id: str
    """The training run (model id) the checkpoint belongs to."""
    checkpoint_type: CheckpointType
    """The checkpoint's kind, from the path's segment."""
    name: str
    """The checkpoint's name within its run and kind."""

    @classmethod
    def parse(cls, path: str) -> TinkerPath:
        """Parse ``path``.

        Raises:
            InvalidInputError: ``path`` is not of the form
                ``tinker://<training_run_id>/<weights|sampler_weights|external_weights>/<name>``
                with every part non-empty.
        """
        run, checkpoint_type, name = split_tinker_path(path)
        if not run or not name:
            raise InvalidInputError(
                f"malformed tinker path {path!r}: the training run id and the name must not be "
                f"empty; {_EXPECTED}"
            )
        return cls(training_run_id=run, checkpoint_type=checkpoint_type, name=name)

    @property
    def segment(self) -> str:
        """The path segment for this kind: ``weights``, ``sampler_weights`` or ``external_weights``."""
        return _TYPE_TO_SEGMENT[self.checkpoint_type]

    @property
    def checkpoint_id(self) -> str:
        """``<segment>/<name>``, how REST endpoints address the checkpoint within its run."""
        return f"{self.segment}/{self.name}"

    def __str__(self) -> str:
        return f"{TINKER_SCHEME}{self.training_run_id}/{self.checkpoint_id}"


class ParsedCheckpointTinkerPath(ResponseStruct, kw_only=True, frozen=True):
    """A ``tinker://`` checkpoint path and its parts (0.38's model; see :class:`TinkerPath`)."""

    tinker_path: str
    """The path as given."""
    training_run_id: str
    """The training run the checkpoint belongs to."""
    checkpoint_type: CheckpointType
    """training, sampler or external, from the path's segment."""
    checkpoint_id: str
    """``<segment>/<name>``, how REST endpoints address the checkpoint within its run."""

    @classmethod
    def from_tinker_path(cls, tinker_path: str) -> ParsedCheckpointTinkerPath:
        """Parse ``tinker_path`` with 0.38's rules (empty run id or name allowed).

        Raises:
            InvalidInputError: (a ValueError, as in 0.38) not ``tinker://`` followed by exactly
                three parts with a known segment in the middle.
        """
        run, checkpoint_type, name = split_tinker_path(tinker_path)
        segment = _TYPE_TO_SEGMENT[checkpoint_type]
        return cls(
            tinker_path=tinker_path,
            training_run_id=run,
            checkpoint_type=checkpoint_type,
            checkpoint_id=f"{segment}/{name}",
        )


class Checkpoint(ResponseStruct, kw_only=True, frozen=True):
    """A saved checkpoint."""

    checkpoint_id: str
    """``<segment>/<name>``, e.g. ``weights/step-10``."""
    checkpoint_type: CheckpointType
    """training, sampler or external."""
    time: datetime
    """When the checkpoint was created."""
    tinker_path: str
    """Its full ``tinker://`` path."""
    size_bytes: int | None = None
    """Stored size in bytes."""
    public: bool = False
    """Whether anyone may read it."""
    user_metadata: dict[str, str] | None = None
    """Metadata the user attached when saving."""
    expires_at: datetime | None = None
    """When it expires; None means never."""


class Cursor(ResponseStruct, kw_only=True, frozen=True):
    """Offset pagination of a listing."""

    offset: int
    """Index of the first item of this page."""
    limit: int
    """Page size requested."""
    total_count: int
    """Number of items in the whole listing."""


class CheckpointsListResponse(ResponseStruct, kw_only=True, frozen=True):
    """A page of checkpoints, newest first."""

    checkpoints: list[Checkpoint]
    cursor: Cursor | None = None
    """Pagination; None for unpaginated listings."""


class TrainingRun(ResponseStruct, kw_only=True, frozen=True):
    """A training run (one training model)."""

    training_run_id: str
    """Its id, equal to the model id."""
    base_model: str
    """The base model it fine-tunes."""
    model_owner: str
    """Who created it."""
    is_lora: bool
    """Whether it trains LoRA adapters."""
    corrupted: bool = False
    """Whether the run is in a corrupted state."""
    lora_rank: int | None = None
    """The LoRA rank, for LoRA runs."""
    last_request_time: datetime
    """When it last received a request."""
    last_checkpoint: Checkpoint | None = None
    """Its newest training checkpoint."""
    last_sampler_checkpoint: Checkpoint | None = None
    """Its newest sampler checkpoint."""
    user_metadata: dict[str, str] | None = None
    """Metadata the user attached at creation."""


class TrainingRunsResponse(ResponseStruct, kw_only=True, frozen=True):
    """A page of training runs."""

    training_runs: list[TrainingRun]
    cursor: Cursor
    """Pagination."""


class ExternalWeightsUrlsResponse(ResponseStruct, kw_only=True, frozen=True):
    """Signed download URLs for an external-weights export."""

    urls: dict[str, str]
    """Signed URL per file, keyed by the file's path relative to the checkpoint root."""
    expires: datetime
    """When the URLs stop working."""


class ArchiveUrlResponse(ResponseStruct, kw_only=True, frozen=True):
    """A signed archive download URL (legacy ``.../archive`` endpoint, JSON form)."""

    url: str
    expires: datetime


class SetCheckpointTtlRequest(RequestStruct, kw_only=True, frozen=True):
    """Change a checkpoint's lifetime (``PUT .../checkpoints/{id}/ttl``).

    ``ttl_seconds`` is always sent; ``null`` removes the expiry.
    """

    ttl_seconds: int | None = None
    """New lifetime from now, 1 hour to 10 years; None never expires."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ttl_seconds(self.ttl_seconds)
