"""Subcommands. Heavy imports stay inside each command so ``--help`` starts fast."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tinker_actors.cli._group import RootGroup
from tinker_actors.cli._options import api_options

if TYPE_CHECKING:
    from tinker_actors.local._backend import Backend


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@api_options
@click.version_option(package_name="tinker-actors", message="%(version)s")
def cli() -> None:
    """Tinker on trio: manage runs, checkpoints and sessions, sample, and serve locally.

    Connection options given here apply to every command (a command's own win); the service
    and credential otherwise come from TINKER_BASE_URL and TINKER_API_KEY, as in the SDK.
    """


@cli.command()
def version() -> None:
    """Print the tinker_actors version."""
    from tinker_actors._version import __version__

    click.echo(__version__)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, help="Port to bind (0 = any free).")
@click.option(
    "--backend",
    type=click.Choice(["null", "torch"]),
    default="null",
    show_default=True,
    help="Model backend: null = instant shaped results; torch = real LoRA training and "
    "sampling on small seeded models (needs the torch extra).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Persist sessions, runs and checkpoints here (default: a temporary directory).",
)
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A fault plan (.json or .toml); see docs/local-server.md.",
)
@click.option(
    "--fault",
    "fault_flags",
    multiple=True,
    help="A fault rule in the compact syntax, e.g. 'asample:429@0.2,retry_after=1' (repeatable).",
)
@click.option("--fault-seed", type=int, default=None, help="Seed for --fault rules.")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    default=None,
    help="torch backend: samples without a seed of their own repeat from run to run (each "
    "one's seed comes from this and the request); default: random.",
)
@click.option(
    "--prefix-cache",
    "prefix_cache_mb",
    type=click.IntRange(min=0),
    default=None,
    metavar="MB",
    help="torch backend: memory kept for the keys and values of sequences already sampled, "
    "which later prompts that start with them reuse (a conversation's next turn); 0 keeps "
    "none. Default: 1024.",
)
@click.option("--jwt", is_flag=True, help="Require JWTs exchanged at /api/v1/auth/token.")
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Accept only these keys (repeatable; default: any key starting with tml-).",
)
@click.option(
    "--admin-key",
    "admin_keys",
    multiple=True,
    help="Only these keys may use the /_local/ debug routes (repeatable; default: any key).",
)
@click.option(
    "--long-poll",
    type=float,
    default=25.0,
    show_default=True,
    help="Seconds retrieve_future holds a pending poll.",
)
@click.option(
    "--model-alias",
    "model_aliases",
    multiple=True,
    metavar="NAME=MODEL",
    help="Answer NAME with a local model, e.g. Qwen/Qwen3.5-9B-Base=local/tiny (repeatable).",
)
@click.option(
    "--catalogue",
    "catalogue_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A catalogue file (.json or .toml) with an [aliases] table of NAME = MODEL.",
)
@click.option(
    "--limit",
    "limit_flags",
    multiple=True,
    metavar="NAME=VALUE",
    help="Change a request limit, e.g. 'max_num_samples=256' (repeatable); the names and "
    "defaults are in docs/local-server.md.",
)
@click.option(
    "--result-ttl",
    type=click.FloatRange(min=1.0),
    default=3600.0,
    show_default=True,
    metavar="S",
    help="Seconds a finished operation's result stays retrievable (as on the service). The "
    "server holds that long's worth of results: lower it for long, fast null-backend runs.",
)
@click.option(
    "--ephemeral-samplers",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    metavar="N",
    help="Per training run, keep the weights of the N most recently used samplers made by "
    "save_weights_and_get_sampling_client (RL loops make one a step); older ones are deleted "
    "and answer 404. 0 keeps all.",
)
def serve(
    host: str,
    port: int,
    backend: str,
    data_dir: Path | None,
    faults_file: Path | None,
    fault_flags: tuple[str, ...],
    fault_seed: int | None,
    seed: int | None,
    prefix_cache_mb: int | None,
    jwt: bool,
    api_keys: tuple[str, ...],
    admin_keys: tuple[str, ...],
    long_poll: float,
    model_aliases: tuple[str, ...],
    catalogue_file: Path | None,
    limit_flags: tuple[str, ...],
    result_ttl: float,
    ephemeral_samplers: int,
) -> None:
    """Run a local Tinker-compatible server until interrupted."""
    import signal

    import trio

    from tinker_actors.errors import InvalidInputError
    from tinker_actors.local import ServerLimits, ServerSettings, open_local_server
    from tinker_actors.local._anthropic_text import ANTHROPIC_PREFIX
    from tinker_actors.local._faults import FaultPlan
    from tinker_actors.local._oai import OAI_PREFIX

    if faults_file is not None and fault_flags:
        raise click.UsageError("use --faults FILE or --fault RULE, not both")
    try:
        plan = (
            FaultPlan.from_file(faults_file)
            if faults_file is not None
            else FaultPlan.from_flags(list(fault_flags), seed=fault_seed)
            if fault_flags
            else None
        )
        settings = ServerSettings(
            data_dir=data_dir,
            jwt_auth=jwt,
            api_keys=frozenset(api_keys) if api_keys else None,
            admin_keys=frozenset(admin_keys) if admin_keys else None,
            long_poll_seconds=long_poll,
            model_aliases=_aliases(model_aliases, catalogue_file),
            limits=ServerLimits.from_flags(limit_flags),
            result_ttl=result_ttl,
            ephemeral_samplers=ephemeral_samplers or None,
        )
    except (InvalidInputError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    if seed is not None and backend != "torch":
        raise click.UsageError("--seed seeds the torch backend's sampling; add --backend torch")
    if prefix_cache_mb is not None and backend != "torch":
        raise click.UsageError(
            "--prefix-cache sizes the torch backend's cache; add --backend torch"
        )
    model_backend = _make_backend(backend, seed, prefix_cache_mb)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host}, which other machines may reach", err=True)

    async def main() -> None:
        # SIGTERM (service managers, Popen.terminate) stops as cleanly as Ctrl-C: the server's
        # temporary state is removed and the data dir is left consistent. The receiver is in
        # place before the URL is printed, so a client that saw the URL can always stop it.
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with (
                open_local_server(backend=model_backend, settings=settings, faults=plan) as server,
                trio.open_nursery() as nursery,
            ):
                url = await nursery.start(server.serve, host, port)
                click.echo(f"tinker-actors local server ({backend} backend) at {url}")
                click.echo(f"  export TINKER_BASE_URL={url} TINKER_API_KEY=tml-local")
                click.echo(f"  OpenAI-compatible API: {url}{OAI_PREFIX} (the same key)")
                click.echo(f"  Anthropic-compatible API: {url}{ANTHROPIC_PREFIX} (the same key)")
                if data_dir is not None:
                    click.echo(f"  data dir: {data_dir}")
                for alias, target in settings.model_aliases.items():
                    click.echo(f"  alias: {alias} -> {target}")
                if plan is not None:
                    click.echo(f"  fault plan: {len(plan.rules)} rule(s), seed {plan.seed}")
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        click.echo("stopped")

    try:
        trio.run(main)
    except* KeyboardInterrupt:  # may arrive bare or inside the nurseries' exception group
        click.echo("stopped")


def _aliases(flags: tuple[str, ...], catalogue_file: Path | None) -> dict[str, str]:
    """Merge a catalogue file's aliases with ``--model-alias`` flags (checked; flags last)."""
    from tinker_actors.local._catalogue import check_aliases, parse_alias, read_catalogue_file

    pairs = list(read_catalogue_file(catalogue_file).items()) if catalogue_file else []
    pairs += [parse_alias(flag) for flag in flags]
    return dict(check_aliases(pairs, source="--catalogue and --model-alias"))


@cli.group()
def tokenizers() -> None:
    """Local models' tokenizers, for code that loads tokenizers by model name."""


@tokenizers.command("install")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The Hugging Face hub cache to write (default: the one HF_HUB_CACHE / HF_HOME name).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="A local model to install (repeatable; default: every local model).",
)
@click.option(
    "--model-alias",
    "model_aliases",
    multiple=True,
    metavar="NAME=MODEL",
    help="Also install MODEL's tokenizer as NAME (repeatable), as serve --model-alias.",
)
@click.option(
    "--catalogue",
    "catalogue_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Install the aliases of this catalogue file too.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace repositories the cache got from elsewhere (real downloads).",
)
def tokenizers_install(
    cache_dir: Path | None,
    models: tuple[str, ...],
    model_aliases: tuple[str, ...],
    catalogue_file: Path | None,
    force: bool,
) -> None:
    """Write tokenizers into a Hugging Face cache under model names and aliases.

    Afterwards AutoTokenizer.from_pretrained(NAME) loads them with HF_HUB_OFFLINE=1. Only the
    repositories named are written; one downloaded from the hub is left alone unless --force.
    """
    from tinker_actors.errors import InvalidInputError
    from tinker_actors.local._hf_cache import hub_cache_dir, install_tokenizers

    try:
        aliases = _aliases(model_aliases, catalogue_file)
        target = cache_dir if cache_dir is not None else hub_cache_dir()
        installed = install_tokenizers(
            target, models=list(models) or None, aliases=aliases, force=force
        )
    except InvalidInputError as exc:
        raise click.ClickException(str(exc)) from None
    except ImportError as exc:
        raise click.ClickException(
            f"building tokenizers needs the 'server' extra ({exc.name} is missing): "
            "pip install 'tinker-actors[server]'"
        ) from None
    for entry in installed:
        via = "" if entry.name == entry.model else f" (alias of {entry.model})"
        click.echo(f"{entry.name}{via}: {entry.snapshot}")
    hint = f"HF_HUB_CACHE={target} " if cache_dir is not None else ""
    click.echo(f"load them offline with: {hint}HF_HUB_OFFLINE=1")


def prefer_passive_omp_waits() -> None:
    """Make OpenMP wait passively unless the user chose otherwise; call before torch loads.

    OpenMP threads that spin while they wait (libgomp's default) cost 10-20x on a busy
    machine: a B=1 decoding step of local/tiny took 200-600 ms instead of 15 ms with the
    recipe's own process (or the SDK's event loop) on the same 2 cores. Waiting passively costs
    nothing measurable on large steps. libgomp reads this when torch is first imported.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _make_backend(
    name: str, seed: int | None = None, prefix_cache_mb: int | None = None
) -> Backend | None:
    """Build the named model backend (None = the server's default, null)."""
    if name != "torch":
        return None
    prefer_passive_omp_waits()
    try:
        from tinker_actors.local._torch_backend import TorchBackend
    except ImportError as exc:
        raise click.ClickException(
            f"--backend torch needs PyTorch ({exc}); install tinker-actors[torch] with "
            "-c constraints.txt (pip install -c constraints.txt 'tinker-actors[torch]')"
        ) from None
    if prefix_cache_mb is None:
        return TorchBackend(seed=seed)
    return TorchBackend(seed=seed, prefix_cache_bytes=prefix_cache_mb * 1024 * 1024)
