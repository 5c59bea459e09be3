"""tinker-cookbook 0.6.1's multi-turn and multi-agent RL recipes (``recipes/multiplayer_rl``),
unmodified, on ``tinker-actors serve --backend torch`` under the import switch.

The cookbook's default models are aliased to local/tiny (a seeded 2-layer model), so each recipe
runs for two steps at small sizes in seconds. What each one adds to the single-turn RL recipes
of ``test_cookbook_offline_recipes.py``:

* ``guess_number``: ten-turn episodes, each merged into one datum with provenance spanning
  every turn, whose prompts grow by the last turn (the server's kept prefixes serve them).
* ``twenty_questions``: the player's questions answered by a second sampling client on another
  base model (the answerer), in episodes of up to twenty turns.
* ``text_arena`` (tic-tac-toe from ``textarena``): self-play, two environments sharing one game
  and waiting on each other through an ``asyncio.Condition``, both players' trajectories trained;
  the evaluation plays against the untrained base model through a third sampling client.

Each run must keep the trainer's logprobs of the sampled tokens equal to the sampler's
(``optim/kl_sample_train_v1`` ~ 0, :func:`serve_support.trained_under_the_switch`).
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import serve_in_child, trained_under_the_switch

pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")

pytestmark = [pytest.mark.interop, pytest.mark.slow]

#: guess_number's policy (given on its command line, as in test_cookbook_offline_recipes.py)
MODEL = "Qwen/Qwen3.5-9B-Base"
#: twenty_questions' and text_arena's default policy, and twenty_questions' answerer
PLAYER, ANSWERER = "Qwen/Qwen3.5-4B", "Qwen/Qwen3.5-9B"
ALIASES = [a for name in (MODEL, PLAYER, ANSWERER) for a in ("--model-alias", f"{name}=local/tiny")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cookbook-multiplayer")
    # the command a user runs, into a cache of the test's own
    command = [
        sys.executable, "-m", "tinker_actors.cli", "tokenizers", "install",
        "--cache-dir", str(root / "hub"), "--model", "local/tiny", *ALIASES,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return root


@pytest.fixture(scope="module")
def server_url(workdir: Path) -> Iterator[str]:
    with serve_in_child("--backend", "torch", "--seed", "0", *ALIASES) as url:
        yield url


def test_multi_turn_guess_number_runs_under_the_switch(workdir: Path, server_url: str) -> None:
    # multiplayer_rl/guess_number: ten-turn episodes, each merged by rl/data_processing.py
    # into one datum per episode with provenance spanning every turn
    args = [f"model_name={MODEL}", "renderer_name=role_colon", "group_size=2", "batch_size=2"]
    module = "tinker_cookbook.recipes.multiplayer_rl.guess_number.train"
    marker = "optim/kl_sample_train_v1"
    for row in trained_under_the_switch(workdir, server_url, module, args, marker):
        assert row["env/all/turns_per_episode"] > 1, row
        # each turn's prompt is the last one's prompt and answer: the server's kept prefixes
        # serve most of it (about 80 %; 1 % with --prefix-cache 0), as the cookbook counts
        assert row["tokens/prefill_cached"] > 2 * row["tokens/prefill_uncached"], row


def test_twenty_questions_player_and_answerer_run_under_the_switch(
    workdir: Path, server_url: str
) -> None:
    # the answerer is a second sampling client on another base model, asked once per turn
    args = ["group_size=2", "batch_size=2"]  # 2 groups of 2 episodes
    module = "tinker_cookbook.recipes.multiplayer_rl.twenty_questions.train"
    for row in trained_under_the_switch(workdir, server_url, module, args, "optim/lr"):
        assert row["env/all/total_episodes"] == 4, row
        # local/tiny never guesses the word: every episode asks all its questions
        assert row["env/all/turns_per_episode"] > 1, row
        assert math.isfinite(row["env/all/reward/total"]), row


def test_tic_tac_toe_self_play_runs_under_the_switch(workdir: Path, server_url: str) -> None:
    pytest.importorskip("textarena", reason="text_arena needs textarena (the cookbook extra)")
    # batch_size counts players: 2 games a step, each played by two environments
    args = ["batch_size=4", "num_train_datapoints=8", "num_test_datapoints=4"]
    module = "tinker_cookbook.recipes.multiplayer_rl.text_arena.train"
    rows = trained_under_the_switch(workdir, server_url, module, args, "optim/lr", eval_every=1)
    for row in rows:
        assert row["env/all/total_episodes"] == 4, row
        # the evaluation's games against the base model (its opponent's own sampling client)
        assert row["test/env/all/total_episodes"] == 4, row
        # a game ends on an illegal move (-2 to its player) or with a result (+-1, 0 a draw);
        # both players of a game are trained, so a step's mean is never below -1
        assert -1.0 <= row["env/all/reward/total"] <= 1.0, row
