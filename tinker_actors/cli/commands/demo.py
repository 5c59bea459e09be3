"""``tinker-actors demo``: fine-tune a local model on one fact, offline, and show it learned."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from tinker_actors.cli._group import BadInput, CommandError
from tinker_actors.cli._options import format_option, output_format

__all__ = ["command"]


@click.command()
@click.option(
    "--model",
    default=None,
    help="Base model (default: SmolLM2-135M-Instruct when its extra is installed, else "
    "local/tiny).",
)
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="Training steps.")
@click.option(
    "--learning-rate", type=click.FloatRange(0, 1, min_open=True), default=None, help="Adam LR."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the local server keeps the checkpoint (default: a new temporary directory).",
)
@format_option
def command(
    model: str | None, steps: int | None, learning_rate: float | None, data_dir: Path | None
) -> None:
    """Teach a local model one fact with LoRA, offline, and sample it before and after.

    A local server with the torch backend runs in this process; the SDK trains on it with
    pipelined forward_backward + optim_step steps, saves a checkpoint and samples again.
    """
    from tinker_actors.cli._commands import prefer_passive_omp_waits

    prefer_passive_omp_waits()  # the trainer and the SDK's event loop share this process
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CommandError(
            "the demo trains with PyTorch: pip install -c constraints.txt "
            "'tinker-actors[server,cli,torch]'"
        ) from None
    import trio

    from tinker_actors.cli import _demo_run as demo
    from tinker_actors.errors import InvalidInputError, TinkerError

    chosen = demo.pick_model(model)
    settings = demo.settings_for(chosen, steps, learning_rate, data_dir)
    as_json = output_format() == "json"
    try:
        if as_json:
            result = trio.run(demo.run_demo, settings)
        else:
            result = _run_with_progress(demo, settings)
    except BaseException as exc:
        if data_dir is None:
            # the directory the demo made holds nothing worth keeping after a failed or
            # interrupted run (a mistyped --model must not leave one in /tmp each time)
            shutil.rmtree(settings.data_dir, ignore_errors=True)
        if isinstance(exc, InvalidInputError):
            raise BadInput(str(exc)) from None
        if isinstance(exc, TinkerError):
            raise CommandError(f"the demo failed: {exc}") from None
        raise
    if as_json:
        from tinker_actors.cli._output import print_json

        print_json(result.__dict__)
        return
    _print_summary(result)


def _run_with_progress(demo: Any, settings: Any) -> Any:
    import functools

    import trio
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tinker_actors.cli import _demo_run

    assert isinstance(settings, _demo_run.DemoSettings)
    console = Console()
    console.print(
        f"[bold]tinker-actors demo[/]: teaching [cyan]{settings.model}[/] one fact with LoRA "
        f"(rank {settings.rank}, {settings.steps} steps, lr {settings.learning_rate:g}), offline"
    )
    console.print(f"  Q: {_demo_run.QUESTION.splitlines()[0].removeprefix('Question: ')}")
    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss [bold]{task.fields[loss]}"),
        console=console,
        transient=False,
    )
    task = progress.add_task("train", total=settings.steps, loss="-")

    def on_step(step: int, loss: float) -> None:
        progress.update(task, completed=step, loss=f"{loss:.4f}")

    def on_sample(label: str, text: str) -> None:
        if label == "before":
            console.print(f"  before training, the model answers: [red]{text!r}[/]")
            progress.start()
        else:
            progress.stop()
            console.print(f"  after training, the model answers:  [green]{text!r}[/]")

    try:
        return trio.run(
            functools.partial(_demo_run.run_demo, settings, on_step=on_step, on_sample=on_sample)
        )
    finally:
        progress.stop()


def _print_summary(result: Any) -> None:
    from rich.console import Console

    from tinker_actors.cli._demo_run import DemoResult

    assert isinstance(result, DemoResult)
    console = Console()
    verdict = "[green]learned the answer[/]" if result.learned else "[red]did not learn it[/]"
    console.print(
        f"  loss {result.first_loss:.4f} -> {result.final_loss:.4f} in {result.steps} steps; "
        f"the model {verdict} ({result.seconds:.1f} s)"
    )
    console.print(f"  checkpoint: {result.checkpoint}")
    console.print(f"  its files:  {result.checkpoint_dir}")
