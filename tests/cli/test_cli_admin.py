"""``billing`` and ``audit`` against a scripted service: values, CSV, and 403/404 in one line."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cli_support import KEY, fake_service, invoke, json_of, one_line_error

USAGE = {
    "data": [
        {
            "bucket_start": "2024-06-01T00:00:00Z",
            "bucket_end": "2024-06-01T01:00:00Z",
            "base_model": "Qwen/Qwen3-8B",
            "session_id": "s-1",
            "estimated_cost_usd": 0.25,
            "effective_rate_usd_per_million_tokens": 0.5,
            "event_info": {"type": "training", "token_count": 500000},
        },
        {
            "bucket_start": "2024-06-01T00:00:00Z",
            "bucket_end": "2024-06-01T01:00:00Z",
            "base_model": "Qwen/Qwen3-8B",
            "session_id": "s-1",
            "estimated_cost_usd": None,
            "event_info": {"type": "sampling_prefill", "cached": True, "token_count": 1000},
        },
    ],
    "sessions": {"s-1": {"user_metadata": {"team": "a"}}},
    "cost_data_through": "2024-06-01T00:00:00Z",
}
STORAGE = {
    "effective_rate_usd_per_gigabyte_month": 0.1,
    "data": [
        {
            "project_id": "p-1",
            "user_email": "a@example.com",
            "checkpoint_count": 3,
            "size_bytes": 3_000_000_000,
            "size_gigabytes": 3.0,
            "estimated_monthly_cost_usd": 0.3,
        }
    ],
}
AUDIT = {
    "entries": [
        {
            "timestamp": "2024-06-01T10:00:00Z",
            "event": "checkpoint_read",
            "event_details": {"tinker_path": "tinker://r/weights/x"},
        }
    ]
}
WINDOW = ["2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z"]


def _args(url: str, *args: str) -> list[str]:
    return [*args, "--base-url", url, "--api-key", KEY, "--retries", "0"]


def test_billing_usage_json_table_and_csv(tmp_path: Path) -> None:
    with fake_service() as service:
        service.answer("GET", "/api/v1/billing/usage/events", 200, USAGE)
        data = json_of(invoke(_args(service.url, "billing", "usage", *WINDOW, "-f", "json")))
        table = invoke(_args(service.url, "billing", "usage", *WINDOW))
        rows = tmp_path / "rows.csv"
        sessions = tmp_path / "sessions.csv"
        wrote = invoke(
            _args(
                service.url,
                "billing",
                "usage",
                *WINDOW,
                "--csv",
                str(rows),
                "--sessions-csv",
                str(sessions),
            )
        )
    assert data["data"][0]["event_info"] == {"type": "training", "token_count": 500000}
    assert data["data"][1]["estimated_cost_usd"] is None
    assert data["sessions"] == {"s-1": {"user_metadata": {"team": "a"}}}
    assert data["cost_data_through"] == "2024-06-01T00:00:00Z"
    assert table.exit_code == 0
    assert "2 hourly usage row(s)" in table.stdout
    assert wrote.exit_code == 0, wrote.stderr
    parsed = list(csv.DictReader(io.StringIO(rows.read_text())))
    assert [(r["type"], r["token_count"], r["estimated_cost_usd"]) for r in parsed] == [
        ("training", "500000", "0.25"),
        ("sampling_prefill", "1000", ""),
    ]
    assert "event_info" not in parsed[0]
    assert list(csv.DictReader(io.StringIO(sessions.read_text()))) == [
        {"session_id": "s-1", "user_metadata": '{"team": "a"}'}
    ]


def test_billing_usage_sends_the_window() -> None:
    with fake_service() as service:
        service.answer("GET", "/api/v1/billing/usage/events", 200, {"data": []})
        result = invoke(_args(service.url, "billing", "usage", "2024-06-01T00:00", "2024-06-02"))
    assert result.exit_code == 0
    assert "no usage in this window" in result.stdout
    assert service.requests == [("GET", "/api/v1/billing/usage/events")]
    # naive times are UTC; both bounds go out in RFC 3339
    assert parse_qs(service.queries[0]) == {
        "starting_on": ["2024-06-01T00:00:00Z"],
        "ending_before": ["2024-06-02T00:00:00Z"],
    }


def test_checkpoint_storage() -> None:
    with fake_service() as service:
        service.answer("GET", "/api/v1/billing/usage/checkpoints/current", 200, STORAGE)
        data = json_of(invoke(_args(service.url, "billing", "checkpoint-storage", "-f", "json")))
        stdout_csv = invoke(_args(service.url, "billing", "checkpoint-storage", "--csv", "-"))
    assert data["effective_rate_usd_per_gigabyte_month"] == 0.1
    assert data["data"][0]["checkpoint_count"] == 3
    (row,) = csv.DictReader(io.StringIO(stdout_csv.stdout))
    assert row["effective_rate_usd_per_gigabyte_month"] == "0.1"
    assert row["size_bytes"] == "3000000000"


def test_audit() -> None:
    with fake_service() as service:
        service.answer("GET", "/api/v1/audit", 200, AUDIT)
        data = json_of(invoke(_args(service.url, "audit", "--day", "2024-06-01", "-f", "json")))
        table = invoke(_args(service.url, "audit", "--type", "checkpoints"))
    assert data["entries"][0]["event"] == "checkpoint_read"
    assert data["entries"][0]["event_details"] == {"tinker_path": "tinker://r/weights/x"}
    assert table.exit_code == 0
    assert "checkpoint_read" in table.stdout


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (["billing", "usage", *WINDOW], "/api/v1/billing/usage/events"),
        (["billing", "checkpoint-storage"], "/api/v1/billing/usage/checkpoints/current"),
        (["audit"], "/api/v1/audit"),
    ],
)
@pytest.mark.parametrize(
    ("status", "words"), [(403, "permission denied (403"), (404, "not found (404")]
)
def test_admin_refusals_in_one_line(args: list[str], path: str, status: int, words: str) -> None:
    with fake_service() as service:
        service.answer("GET", path, status, {"detail": "requires the billing role"})
        line = one_line_error(invoke(_args(service.url, *args)), 1)
    assert words in line
    assert "requires the billing role" in line


def test_billing_window_checked_before_sending() -> None:
    with fake_service() as service:
        backwards = invoke(_args(service.url, "billing", "usage", WINDOW[1], WINDOW[0]))
        garbage = invoke(_args(service.url, "billing", "usage", "yesterday", WINDOW[1]))
    assert "must be after" in one_line_error(backwards, 2)
    assert "ISO 8601" in one_line_error(garbage, 2)
    assert service.requests == []
