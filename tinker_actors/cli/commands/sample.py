"""``tinker-actors sample``: a prompt in, completions out, from a base model or a checkpoint.

::

    tinker-actors sample --model local/tiny "Once upon a time"
    echo "2 + 2 =" | tinker-actors sample --checkpoint tinker://RUN/sampler_weights/step-100 -n 3
    tinker-actors sample --model local/tiny --prompt-tokens 1,2,3 -f json

The prompt is tokenized with the base model's tokenizer, found offline: ``--tokenizer`` (a
Hugging Face id in the local cache, or a directory holding ``tokenizer.json``), else the Hugging
Face cache, else (for the local server's ``local/*`` models) the tokenizer the local server
builds, rebuilt here the same way. ``--prompt-tokens`` skips tokenizing altogether.

A training checkpoint (``weights/...``) cannot be sampled directly: its state is loaded into a
new training run whose weights are then sampled (a note on stderr says so).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._group import CommandError
from tinker_actors.cli._options import api_options, output_format
from tinker_actors.cli._output import print_json
from tinker_actors.cli._params import CheckpointPath

if TYPE_CHECKING:
    from tinker_actors import SamplingClient, Tokenizer
    from tinker_actors.cli._api import Api
    from tinker_actors.types import SampleResponse

__all__ = ["command", "find_tokenizer"]


def find_tokenizer(base_model: str, override: str | None) -> Tokenizer:
    """Load ``base_model``'s tokenizer offline (see the module docstring for the order).

    Raises:
        CommandError: no source has it; the message says how to provide one.
    """
    from tinker_actors.tokenizer import TokenizerUnavailableError, get_tokenizer

    if override is not None:
        try:
            return get_tokenizer(base_model, override)
        except (TokenizerUnavailableError, OSError, ValueError) as exc:
            raise CommandError(f"cannot load the tokenizer {override!r}: {exc}") from None
    try:
        return get_tokenizer(base_model)
    except TokenizerUnavailableError as exc:
        reason = str(exc)
    local = _local_tokenizer_dir(base_model)
    if local is not None:
        return get_tokenizer(base_model, local)
    raise CommandError(
        f"no tokenizer for {base_model} on this machine ({reason}); pass --tokenizer NAME_OR_DIR, "
        "or the prompt as --prompt-tokens"
    )


def _local_tokenizer_dir(base_model: str) -> str | None:
    """The local server's tokenizer for a ``local/*`` model, built in its cache; else None."""
    try:
        from tinker_actors.local._catalogue import UnknownModelError, lookup_model
        from tinker_actors.local._core import default_cache_dir
        from tinker_actors.local._tokenizer import ensure_tokenizer_dir
    except ImportError:  # the server extra (tokenizers) is not installed
        return None
    try:
        spec = lookup_model(base_model)
    except UnknownModelError:
        return None
    return str(ensure_tokenizer_dir(default_cache_dir() / "tokenizers", spec.vocab_size))


def _prompt_tokens(value: str) -> list[int]:
    try:
        tokens = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of token ids", param_hint="'--prompt-tokens'"
        ) from None
    if not tokens:
        raise click.BadParameter("no token ids given", param_hint="'--prompt-tokens'")
    return tokens


@click.command()
@click.argument("prompt", required=False)
@click.option("--model", "base_model", default=None, help="Sample this base model.")
@click.option(
    "--checkpoint",
    type=CheckpointPath("sampler", "training"),
    default=None,
    help="Sample these weights (sampler_weights/..., or a training state weights/...).",
)
@click.option("-n", "--num-samples", type=click.IntRange(1, 128), default=1, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.7,
    show_default=True,
    help="0 is greedy.",
)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True)
@click.option("--top-k", type=int, default=-1, show_default=True, help="-1: no limit.")
@click.option("--seed", type=int, default=None, help="Seed, for repeatable samples.")
@click.option(
    "--stop", multiple=True, help="Stop at this text (repeatable; default: end of sequence)."
)
@click.option("--tokenizer", default=None, metavar="NAME_OR_DIR", help="The tokenizer to use.")
@click.option(
    "--prompt-tokens",
    default=None,
    metavar="IDS",
    help="The prompt as token ids, e.g. 1,2,3 (no tokenizer needed).",
)
@api_options
def command(
    prompt: str | None,
    base_model: str | None,
    checkpoint: str | None,
    num_samples: int,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    stop: tuple[str, ...],
    tokenizer: str | None,
    prompt_tokens: str | None,
) -> None:
    """Sample completions of PROMPT (or of stdin) from a base model or a checkpoint."""
    if (base_model is None) == (checkpoint is None):
        raise click.UsageError("give exactly one of --model BASE_MODEL or --checkpoint PATH")
    ids = _prompt_tokens(prompt_tokens) if prompt_tokens is not None else None
    if ids is not None and prompt is not None:
        raise click.UsageError("give the prompt as text or as --prompt-tokens, not both")
    if ids is None and prompt in (None, "-"):
        if sys.stdin.isatty():
            raise click.UsageError(
                "no prompt: give it as an argument, on stdin, or as --prompt-tokens"
            )
        prompt = sys.stdin.read().removesuffix("\n")
    if ids is None and not prompt:
        raise click.UsageError("the prompt is empty")

    async def work(api: Api) -> dict[str, Any]:
        from tinker_actors.types import ModelInput, SamplingParams

        model = base_model
        if checkpoint is not None:
            model = (await api.rest.get_weights_info_by_tinker_path(checkpoint)).base_model
        assert model is not None
        tok = None if ids is not None else find_tokenizer(model, tokenizer)
        tokens = ids if ids is not None else tok.encode(prompt or "") if tok else []
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=list(stop) if stop else None,
        )
        client = await _sampling_client(api, model, checkpoint)
        response: SampleResponse = await (
            await client.sample(ModelInput.from_ints(tokens), num_samples, params)
        ).result()
        samples = [
            {
                "text": None
                if tok is None
                else tok.decode(list(s.tokens), skip_special_tokens=True),
                "tokens": [int(t) for t in s.tokens],
                "stop_reason": s.stop_reason,
            }
            for s in response.sequences
        ]
        return {
            "model": model,
            "checkpoint": checkpoint,
            "prompt": prompt if ids is None else None,
            "prompt_tokens": list(tokens),
            "samples": samples,
        }

    result = call_api(work, action=f"sample {checkpoint or base_model}")
    if output_format() == "json":
        print_json(result)
        return
    many = len(result["samples"]) > 1
    for index, sample in enumerate(result["samples"]):
        if many:
            click.echo(f"--- sample {index + 1} ({sample['stop_reason']}) ---")
        text = sample["text"]
        click.echo(text if text is not None else " ".join(map(str, sample["tokens"])))


async def _sampling_client(api: Api, model: str, checkpoint: str | None) -> SamplingClient:
    if checkpoint is None:
        return await api.runtime.create_sampling_client(base_model=model)
    if "/sampler_weights/" in checkpoint:
        return await api.runtime.create_sampling_client(model_path=checkpoint)
    if output_format() != "json":
        click.echo(f"note: loading {checkpoint} into a new training run to sample it", err=True)
    training = await api.runtime.create_training_client_from_state(
        checkpoint, user_metadata={"created_by": "tinker-actors sample"}
    )
    return await training.save_weights_and_get_sampling_client()
