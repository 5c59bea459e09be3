"""LocalServerThread's life cycle and LostAnswers, driven over plain HTTP."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette", reason="the server extra is not installed")

from tinker_actors.local import FaultPlan, FaultPlanError
from tinker_actors.testing import LocalServerThread
from tinker_actors.testing._lost import check_lost_plan

HEADERS = {"X-API-Key": "tml-pytest"}
SESSION = {"tags": [], "user_metadata": {}, "sdk_version": "0.38.0", "type": "create_session"}


def test_start_stop_and_the_data_directory(tmp_path: Path) -> None:
    owned = LocalServerThread()
    owned.start()
    assert owned.running
    assert repr(owned).startswith("<LocalServerThread http://127.0.0.1:")
    with httpx.Client(base_url=owned.url, headers=HEADERS, timeout=10) as client:
        assert client.get("/api/v1/healthz").json() == {"status": "ok"}
    final = owned.stop()
    assert final is not None
    assert owned.history == [final]
    assert not owned.running
    with pytest.raises(RuntimeError, match="not running"):
        owned.counters()
    data = owned.data_dir
    assert data.is_dir()
    owned.close()
    assert not data.exists()  # the directory it made is removed
    given = tmp_path / "kept"
    given.mkdir()
    (given / "mine.txt").write_text("x")
    with LocalServerThread(data_dir=given):
        pass
    assert (given / "mine.txt").read_text() == "x"  # a directory it was given is kept


def test_a_thread_never_closed_leaves_no_directory() -> None:
    # a start that fails, with nobody calling close(): the directory goes with the object
    failed = LocalServerThread(backend="tpu")
    data = failed.data_dir
    assert data.is_dir()
    with pytest.raises(ValueError, match="unknown backend"):
        failed.start()
    del failed
    gc.collect()
    assert not data.exists()


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        LocalServerThread(backend="tpu").start()
    with LocalServerThread() as first:
        with pytest.raises(RuntimeError, match="already running"):
            first.start()
        taken = LocalServerThread(port=first.port)
        with pytest.raises(RuntimeError, match="failed to start"):
            taken.start()
        taken.close()
        with pytest.raises(ValueError, match="restart"):
            first.set_faults(FaultPlan.from_flags(["connection:reset=0.5"]))


def test_faults_at_run_time_and_across_restarts() -> None:
    with LocalServerThread(faults=FaultPlan.from_flags(["healthz:503"])) as server:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as client:
            assert client.get("/api/v1/healthz").status_code == 503
            server.set_faults(None)
            assert client.get("/api/v1/healthz").status_code == 200
            server.set_faults(FaultPlan.from_flags(["healthz:418"]))
            assert client.get("/api/v1/healthz").status_code == 418
        assert server.counters().injected("418") == 1
        url = server.restart()  # keeps the plan in force
        with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
            assert client.get("/api/v1/healthz").status_code == 418
        server.restart(faults=None)
        with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
            assert client.get("/api/v1/healthz").status_code == 200
        assert len(server.history) == 2


def test_a_lost_answer_is_done_then_refused() -> None:
    plan = FaultPlan.from_flags(["create_session:502,count=1,should_retry=false"])
    with LocalServerThread(lost_answers=plan) as server:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as client:
            lost = client.post("/api/v1/create_session", json=SESSION)
            assert lost.status_code == 502
            assert lost.headers["x-lost-answer"] == "1"
            assert lost.headers["x-should-retry"] == "false"
            assert client.post("/api/v1/create_session", json=SESSION).status_code == 200
        counters = server.counters()
        assert counters.totals["applied:CreateSession"] == 2  # the lost one was done too
        assert counters.lost("502") == 1
        server.set_lost_answers(None)
        assert server.counters().lost() == 0


def test_lost_answer_plans_are_checked() -> None:
    with pytest.raises(FaultPlanError, match="try_again"):
        check_lost_plan(FaultPlan.from_flags(["retrieve_future:try_again=2"]))
    with pytest.raises(FaultPlanError, match="connection"):
        check_lost_plan(FaultPlan.from_flags(["connection:reset=0.1"]))
    with pytest.raises(FaultPlanError, match="try_again"):
        LocalServerThread(
            lost_answers=FaultPlan.from_flags(["retrieve_future:try_again=2"])
        ).start()
