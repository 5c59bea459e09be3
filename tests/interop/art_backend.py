"""By hand: OpenPipe ART's Tinker backend, with the official client and under the import switch.

ART (``openpipe-art``, an RL framework nobody here wrote) trains through Tinker with its
``TinkerNativeBackend``: an OpenAI-compatible server of its own in front of Tinker sampling
(tinker-cookbook renderers, ``sample_async``), ``forward_backward`` with its RL losses,
``save_weights_for_sampler`` and ``create_sampling_client`` every step, ``save_state``,
``RestClient.list_checkpoints_async`` to find a run's checkpoints when a model is registered
again, ``load_state_with_optimizer`` to resume, and a fork of one model's checkpoint into
another. This script runs two things against one seeded ``tinker-actors serve`` (local/tiny
under the Qwen names ART asks for), once with the official ``tinker`` package and once under
``tinker-actors run``:

* ``flow``: this file's driver of the backend through all of the above (register, rollouts
  through ART's server, a step with ``cispo`` and a checkpoint, one with ``ppo``, register
  again in a fresh backend (resume), a step with ``importance_sampling``, fork, sample);
* ART's own example ``art.pipeline_trainer.yes_no_maybe_pipeline``, unmodified (a pipelined RL
  loop: its rollout workers sample while it trains). local/tiny earns too little reward for it
  to keep going: it stops after a few steps with its own "model collapse" failsafe, rc 0.

It reports any difference between the two clients: the driver's summary, whether the example
trained a step and ended cleanly, and the warnings each run raised (category, method and the
line of ART's code each names).

ART's ``tinker`` extra pins old versions of everything; its Tinker backend itself works with
0.38. It needs an openai older than 3 (ART passes ``httpx`` objects that openai 3's ``httpx2``
refuses), so run this from an environment of its own::

    python -m venv /tmp/artvenv && . /tmp/artvenv/bin/activate
    pip install -c constraints.txt -e '.[interop,server,cli,torch,cookbook]'
    pip install --no-deps -c constraints.txt tinker-cookbook
    pip install --no-deps openpipe-art==0.5.18
    pip install 'openai>=2.14,<3' polars nest-asyncio setproctitle tblib python-dotenv
    python tests/interop/art_backend.py

``--fault RULE`` (repeatable) runs the server under a fault plan, e.g. ``--fault
"*:429|500|503@0.15" --fault "connection:reset=0.03"``: both clients must still agree.

ART binds its server to 0.0.0.0 on a free port (its default; the driver and the example both
reach it on the same machine).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from serve_support import SWITCH, serve_in_child

#: the models the driver (first) and the example ask for; both are local/tiny here
MODELS = ["Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-30B-A3B-Instruct-2507"]
EXAMPLE = "art.pipeline_trainer.yes_no_maybe_pipeline"
#: a warning line as Python prints it: file:line: Category: message
_WARNING = re.compile(r"^(\S+?):(\d+): (\w+Warning): (DEPRECATED: )?(\S+?\(\)|\S+)")
_STEP = re.compile(r"train\[step=(\d+)")


# -- the driver (runs in a child, under one client or the other) ----------------------------------


def flow(art_path: str) -> None:
    """Drive ART's TinkerNativeBackend; print one ``SUMMARY {json}`` line."""
    import asyncio

    import art
    from art.tinker_native import TinkerNativeBackend

    prompts = ["say yes", "say no", "say maybe", "respond with yes or no"]

    async def groups(model: Any) -> list[Any]:
        client = model.openai_client()
        made = []
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            answer = await client.chat.completions.create(
                model=model.get_inference_name(),
                messages=messages,
                max_tokens=6,
                n=4,
                temperature=1.0,
            )
            made.append(
                art.TrajectoryGroup(
                    art.Trajectory(
                        messages_and_choices=[*messages, choice],
                        reward=float(len(choice.message.content or "") % 3),  # some variance
                    )
                    for choice in answer.choices
                )
            )
        return made

    def count(made: list[Any]) -> int:
        return sum(len(group.trajectories) for group in made)

    async def run() -> dict[str, Any]:
        summary: dict[str, Any] = {}
        backend = TinkerNativeBackend(path=art_path)
        model = art.TrainableModel(name="flow", project="p", base_model=MODELS[0])
        await model.register(backend)
        summary["registered_at"] = await model.get_step()
        done = await backend.train(model, await groups(model), learning_rate=1e-3,
                                   save_checkpoint=True)  # fmt: skip
        summary["cispo_step"] = done.step
        done = await backend.train(model, await groups(model), learning_rate=1e-3, loss_fn="ppo")
        summary["ppo_step"] = done.step
        summary["sampled_at_2"] = count(await groups(model))
        await backend.close()

        again = TinkerNativeBackend(path=art_path)  # a new process would do the same
        resumed = art.TrainableModel(name="flow", project="p", base_model=MODELS[0])
        await resumed.register(again)  # finds the step-1 training checkpoint and loads it
        summary["resumed_at"] = await resumed.get_step()
        made = await groups(resumed)
        summary["sampled_resumed"] = count(made)
        done = await again.train(resumed, made, learning_rate=1e-3,
                                 loss_fn="importance_sampling", save_checkpoint=True)  # fmt: skip
        summary["is_step"] = done.step
        fork = art.TrainableModel(name="fork", project="p", base_model=MODELS[0])
        await fork.register(again)
        await again._experimental_fork_checkpoint(fork, from_model="flow", not_after_step=1)
        summary["forked_at"] = await fork.get_step()
        summary["sampled_fork"] = count(await groups(fork))
        await again.close()
        return summary

    print("SUMMARY " + json.dumps(asyncio.run(run()), sort_keys=True), flush=True)


# -- the comparison --------------------------------------------------------------------------------


def launch(argv: list[str], env: dict[str, str], cwd: Path, *, compat: bool) -> tuple[int, str]:
    """Run ``python ARGV`` (under ``tinker-actors run`` when ``compat``); rc and output."""
    command = [sys.executable, *argv]
    if compat:
        command = [*SWITCH, *command]
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    return done.returncode, done.stdout + done.stderr


def warnings_of(output: str) -> collections.Counter[str]:
    """Each warning as ``Category at file:line``, counted. The messages' words differ between
    the SDKs (0.38 names both load_state methods ``load_state*()``), so the line of the call
    is what identifies it; the method is kept for the report."""
    found: collections.Counter[str] = collections.Counter()
    for line in output.splitlines():
        m = _WARNING.match(line)
        if m and m.group(3) in ("FutureWarning", "ExperimentalWarning", "DeprecationWarning"):
            found[f"{m.group(3)} at {Path(m.group(1)).name}:{m.group(2)} ({m.group(5)})"] += 1
    return found


def run_both(work: Path, env: dict[str, str]) -> list[str]:
    differences: list[str] = []
    seen: dict[bool, dict[str, Any]] = {}
    for compat in (False, True):
        who = "under the switch" if compat else "official client"
        rc, out = launch([__file__, "--flow", str(work / f"flow-{compat}")], env, work,
                         compat=compat)  # fmt: skip
        summary = [line[8:] for line in out.splitlines() if line.startswith("SUMMARY ")]
        if rc != 0 or not summary:
            return [f"{who}: the driver failed (rc {rc}):\n{out[-3000:]}"]
        flow_summary = json.loads(summary[0])
        print(f"  driver, {who}: {flow_summary}")
        rc2, out2 = launch(["-m", EXAMPLE], {**env, "ART_PATH": str(work / f"ex-{compat}")},
                           work, compat=compat)  # fmt: skip
        steps = [int(s) for s in _STEP.findall(out2)]
        trained = max(steps, default=0)
        print(f"  {EXAMPLE}, {who}: rc {rc2}, trained {trained} steps")
        if rc2 != 0 or trained < 1:
            differences.append(f"{who}: the example failed (rc {rc2}):\n{out2[-3000:]}")
        seen[compat] = {"summary": flow_summary, "warnings": warnings_of(out)}
    if seen[False]["summary"] != seen[True]["summary"]:
        differences.append(f"driver summaries differ: {seen[False]} != {seen[True]}")
    theirs, ours = seen[False]["warnings"], seen[True]["warnings"]
    print(f"  warnings in the driver: {sum(theirs.values())} official, {sum(ours.values())} ours")

    def by_line(found: collections.Counter[str]) -> collections.Counter[str]:
        lines: collections.Counter[str] = collections.Counter()
        for key, n in found.items():
            lines[key.split(" (")[0]] += n
        return lines

    theirs_at, ours_at = by_line(theirs), by_line(ours)
    for key in sorted(set(theirs_at) | set(ours_at)):
        if theirs_at[key] != ours_at[key]:
            differences.append(f"warning {key}: official {theirs_at[key]}, ours {ours_at[key]}")
    return differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow", help=argparse.SUPPRESS)  # the driver, in a child
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="RULE",
        help="a fault rule for the server, as serve --fault takes (repeatable)",
    )
    args = parser.parse_args()
    if args.flow:
        flow(args.flow)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        hub = work / "hub"
        aliases = [arg for name in MODELS for arg in ("--model-alias", f"{name}=local/tiny")]
        install = [sys.executable, "-m", "tinker_actors.cli", "tokenizers", "install"]
        install += ["--cache-dir", str(hub), "--model", "local/tiny", *aliases]
        subprocess.run(install, check=True, capture_output=True)
        faults = [arg for rule in args.fault for arg in ("--fault", rule)]
        with serve_in_child("--backend", "torch", "--seed", "0", *aliases, *faults) as url:
            env = dict(
                os.environ,
                TINKER_BASE_URL=url,
                TINKER_API_KEY="tml-art-backend",
                HF_HUB_CACHE=str(hub),
                HF_HUB_OFFLINE="1",
                LITELLM_LOCAL_MODEL_COST_MAP="True",  # ART imports litellm, which would fetch it
                WANDB_MODE="disabled",
                PYTHONPATH=str(Path(__file__).parent),
            )
            differences = run_both(work, env)
    for line in differences:
        print(f"  {line}")
    print("no differences" if not differences else f"{len(differences)} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
