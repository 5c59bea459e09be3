"""``checkpoint`` and ``sample`` against the local server: every subcommand, values checked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import Populated, invoke, json_of, one_line_error


def _listed(env: dict[str, str], run_id: str) -> dict[str, dict[str, object]]:
    data = json_of(invoke(["checkpoint", "list", "--run-id", run_id, "-f", "json"], env=env))
    assert data["run_id"] == run_id
    return {c["tinker_path"]: c for c in data["checkpoints"]}


def test_list_and_info(populated: Populated) -> None:
    listed = _listed(populated.env, populated.run_id)
    assert {path: c["checkpoint_type"] for path, c in listed.items()} == {
        populated.state: "training",
        populated.sampler: "sampler",
        populated.external: "external",
    }
    assert all(c["public"] is False and c["expires_at"] is None for c in listed.values())
    everyone = json_of(
        invoke(["checkpoint", "list", "--limit", "0", "-f", "json"], env=populated.env)
    )
    assert set(listed) <= {c["tinker_path"] for c in everyone["checkpoints"]}
    assert everyone["total_count"] >= 3
    samplers = json_of(
        invoke(
            [
                "checkpoint",
                "list",
                "--run-id",
                populated.run_id,
                "--type",
                "sampler_weights",
                "-f",
                "json",
            ],
            env=populated.env,
        )
    )
    assert [c["tinker_path"] for c in samplers["checkpoints"]] == [populated.sampler]
    info = json_of(invoke(["checkpoint", "info", populated.state, "-f", "json"], env=populated.env))
    assert info["tinker_path"] == populated.state
    assert info["checkpoint_type"] == "training"
    assert (info["base_model"], info["is_lora"], info["lora_rank"]) == ("local/tiny", True, 8)
    assert info["training_run_id"] == populated.run_id
    table = invoke(["checkpoint", "list", "--run-id", populated.run_id], env=populated.env)
    assert table.exit_code == 0
    assert "3 checkpoints" in table.stdout


def test_info_of_a_missing_checkpoint(populated: Populated) -> None:
    missing = populated.state.replace("step-1", "nope")
    assert "no checkpoint" in one_line_error(
        invoke(["checkpoint", "info", missing], env=populated.env), 1
    )


def test_publish_unpublish_and_ttl(fresh: Populated) -> None:
    env = fresh.env
    published = json_of(invoke(["checkpoint", "publish", fresh.state, "-f", "json"], env=env))
    assert published["public"] is True
    assert _listed(env, fresh.run_id)[fresh.state]["public"] is True
    assert (
        json_of(invoke(["checkpoint", "unpublish", fresh.state, "-f", "json"], env=env))["public"]
        is False
    )
    before = datetime.now(UTC)
    timed = json_of(
        invoke(["checkpoint", "set-ttl", fresh.state, "--ttl", "2h", "-f", "json"], env=env)
    )
    expires = datetime.fromisoformat(timed["expires_at"])
    assert before + timedelta(hours=2) - timedelta(minutes=1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(hours=2, minutes=1)
    cleared = json_of(
        invoke(["checkpoint", "set-ttl", fresh.state, "--remove", "-f", "json"], env=env)
    )
    assert cleared["expires_at"] is None
    assert "exactly one of" in one_line_error(
        invoke(["checkpoint", "set-ttl", fresh.state, "--ttl", "2h", "--remove"], env=env), 2
    )
    assert "3600" in one_line_error(
        invoke(["checkpoint", "set-ttl", fresh.state, "--ttl", "60"], env=env), 2
    )


def test_delete_by_path_and_by_run(fresh: Populated) -> None:
    env = fresh.env
    refused = invoke(["checkpoint", "delete", fresh.external], env=env, stdin="")
    assert "without confirmation" in one_line_error(refused, 2)
    gone = json_of(invoke(["checkpoint", "delete", fresh.external, "-y", "-f", "json"], env=env))
    assert gone == {"deleted": [fresh.external], "failed": []}
    assert fresh.external not in _listed(env, fresh.run_id)
    by_run = json_of(
        invoke(
            [
                "checkpoint",
                "delete",
                "--run-id",
                fresh.run_id,
                "--type",
                "sampler",
                "-y",
                "-f",
                "json",
            ],
            env=env,
        )
    )
    assert by_run == {"deleted": [fresh.sampler], "failed": []}
    assert set(_listed(env, fresh.run_id)) == {fresh.state}
    later = json_of(
        invoke(
            [
                "checkpoint",
                "delete",
                "--run-id",
                fresh.run_id,
                "--after",
                "2999-01-01",
                "-y",
                "-f",
                "json",
            ],
            env=env,
        )
    )
    assert later == {"deleted": [], "failed": []}
    twice = invoke(["checkpoint", "delete", fresh.external, "-y", "-f", "json"], env=env)
    assert "could not be deleted" in one_line_error(twice, 1)
    report = json.loads(twice.stdout)
    assert report["deleted"] == []
    assert report["failed"][0]["tinker_path"] == fresh.external
    assert "404" in report["failed"][0]["error"]


def test_save_turns_a_state_into_sampler_and_external_weights(fresh: Populated) -> None:
    saved = json_of(
        invoke(
            [
                "checkpoint",
                "save",
                fresh.state,
                "--name",
                "copy",
                "--kind",
                "sampler",
                "-f",
                "json",
            ],
            env=fresh.env,
        )
    )
    assert saved["source"] == fresh.state
    assert saved["tinker_path"] == f"tinker://{saved['training_run_id']}/sampler_weights/copy"
    assert saved["training_run_id"] != fresh.run_id
    sampled = json_of(
        invoke(
            [
                "sample",
                "--checkpoint",
                saved["tinker_path"],
                "--prompt-tokens",
                "1,2,3",
                "--max-tokens",
                "4",
                "-f",
                "json",
            ],
            env=fresh.env,
        )
    )
    assert len(sampled["samples"][0]["tokens"]) == 4
    state = json_of(
        invoke(
            ["checkpoint", "save", fresh.state, "--name", "again", "--ttl", "1d", "-f", "json"],
            env=fresh.env,
        )
    )
    listed = _listed(fresh.env, state["training_run_id"])
    assert listed[state["tinker_path"]]["checkpoint_type"] == "training"
    assert listed[state["tinker_path"]]["expires_at"] is not None
    refused = invoke(["checkpoint", "save", fresh.sampler, "--name", "x"], env=fresh.env)
    assert "takes weights" in one_line_error(refused, 2)


def test_download_a_training_checkpoint(populated: Populated, tmp_path: Path) -> None:
    args = ["checkpoint", "download", populated.state, "-o", str(tmp_path), "-f", "json"]
    data = json_of(invoke(args, env=populated.env))
    target = Path(data["destination"])
    assert target.parent == tmp_path.resolve()
    assert target.name == populated.state.removeprefix("tinker://").replace("/", "_").replace(
        ":", "_"
    )
    assert data["files"] == sorted(p.name for p in target.iterdir())
    assert data["size_bytes"] == sum(p.stat().st_size for p in target.iterdir()) > 0
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no staging left behind
    assert "already exists" in one_line_error(invoke(args, env=populated.env), 2)
    assert json_of(invoke([*args, "--force"], env=populated.env))["files"] == data["files"]


def test_download_external_weights_with_a_progress_bar(
    populated: Populated, tmp_path: Path
) -> None:
    result = invoke(
        ["checkpoint", "download", populated.external, "-o", str(tmp_path), "--progress"],
        env=populated.env,
    )
    assert result.exit_code == 0, result.stderr
    assert "external_weights/" in result.stderr or "null_state" in result.stderr  # the bar's label
    assert "Checkpoint downloaded" in result.stdout
    (target,) = tmp_path.iterdir()
    assert any(target.iterdir())


def test_download_refuses_sampler_weights(populated: Populated, tmp_path: Path) -> None:
    result = invoke(
        ["checkpoint", "download", populated.sampler, "-o", str(tmp_path)], env=populated.env
    )
    assert "sampler_weights" in one_line_error(result, 2)
    assert not any(tmp_path.iterdir())


def test_sample_from_a_base_model(populated: Populated) -> None:
    args = [
        "sample",
        "--model",
        "local/tiny",
        "Once upon a time",
        "--max-tokens",
        "6",
        "--seed",
        "3",
    ]
    data = json_of(invoke([*args, "-n", "2", "-f", "json"], env=populated.env))
    assert data["model"] == "local/tiny"
    assert data["checkpoint"] is None
    assert data["prompt"] == "Once upon a time"
    assert len(data["prompt_tokens"]) > 0
    assert len(data["samples"]) == 2
    for sample in data["samples"]:
        assert len(sample["tokens"]) == 6
        assert sample["stop_reason"] == "length"
        assert isinstance(sample["text"], str)
    text = invoke(args, env=populated.env)
    assert text.exit_code == 0
    assert text.stdout.strip() == data["samples"][0]["text"].strip()


def test_sample_reads_stdin_and_training_checkpoints(populated: Populated) -> None:
    piped = json_of(
        invoke(
            ["sample", "--checkpoint", populated.sampler, "--max-tokens", "3", "-f", "json"],
            env=populated.env,
            stdin="2 + 2 =\n",
        )
    )
    assert piped["prompt"] == "2 + 2 ="
    assert piped["checkpoint"] == populated.sampler
    state = invoke(
        ["sample", "--checkpoint", populated.state, "--prompt-tokens", "5,6", "--max-tokens", "2"],
        env=populated.env,
    )
    assert state.exit_code == 0, state.stderr
    assert "new training run" in state.stderr
    assert len(state.stdout.split()) == 2  # no tokenizer needed: the tokens are printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "hi"], "exactly one of --model"),
        (["sample", "--model", "local/tiny", "--prompt-tokens", "a,b"], "token ids"),
        (["sample", "--model", "local/tiny", "hi", "--prompt-tokens", "1"], "not both"),
        (["sample", "--model", "local/tiny", "--top-p", "0"], "top-p"),
    ],
)
def test_sample_usage_errors(populated: Populated, args: list[str], message: str) -> None:
    assert message in one_line_error(invoke(args, env=populated.env), 2)


def test_sample_without_a_tokenizer(populated: Populated) -> None:
    line = one_line_error(invoke(["sample", "--model", "acme/unknown", "hi"], env=populated.env), 1)
    assert "no tokenizer for acme/unknown" in line
    assert "--prompt-tokens" in line


def test_download_through_an_export_when_the_service_has_no_archive(tmp_path: Path) -> None:
    # A service without the /archive endpoint (a fault answers 404 there): the state is
    # exported as temporary external weights, downloaded, and the export deleted.
    from cli_support import populate

    from tinker_actors.local import FaultPlan
    from tinker_actors.testing import LocalServerThread

    with LocalServerThread(
        faults=FaultPlan.from_flags(["/api/v1/training_runs/*/archive:404"])
    ) as server:
        run = populate(server.url)
        result = invoke(["checkpoint", "download", run.state, "-o", str(tmp_path)], env=run.env)
        assert result.exit_code == 0, result.stderr
        assert "exporting it as external weights" in result.stderr
        data = json_of(
            invoke(
                ["checkpoint", "download", run.state, "-o", str(tmp_path), "--force", "-f", "json"],
                env=run.env,
            )
        )
        everything = json_of(
            invoke(["checkpoint", "list", "--limit", "0", "-f", "json"], env=run.env)
        )
        missing = invoke(
            ["checkpoint", "download", run.state.replace("step-1", "nope"), "-o", str(tmp_path)],
            env=run.env,
        )
    target = Path(data["destination"])
    assert data["files"] == sorted(p.name for p in target.iterdir())
    assert data["size_bytes"] > 0
    assert not [
        c for c in everything["checkpoints"] if c["checkpoint_id"] == "external_weights/download"
    ]
    assert "no checkpoint" in one_line_error(missing, 1)
