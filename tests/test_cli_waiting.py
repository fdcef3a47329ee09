"""What a waiting `chuchuang` command shows: what it waits for, how long it may take, and what
carries on when it is stopped."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from cli import reconcile as reconcile_cli
from cli.waiting import Waiting
from domain.reconciliation import ReconciliationProgress
from settings import Settings


def log_console() -> Console:
    return Console(record=True, width=300, file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115


def test_a_log_gets_one_line_per_change_with_how_long_it_may_take() -> None:
    console = log_console()
    with Waiting(console, "run-1", may_take="a minute") as waiting:
        waiting.update("waiting for a worker")
        waiting.update("waiting for a worker")
        waiting.update("settling", completed=3, total=10, may_take="seconds")
    lines = [line for line in console.export_text().splitlines() if line.startswith("run-1: ")]
    assert lines == ["run-1: waiting for a worker (may take a minute)", "run-1: settling (may take seconds)"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_stopping_the_wait_says_what_carries_on(stop: type[BaseException]) -> None:
    console = log_console()
    with pytest.raises(stop), Waiting(console, "run-2", may_take="2 days", on_stop="run-2 carries on") as waiting:
        waiting.update("waiting for the bill")
        raise stop()
    assert "stopped waiting for run-2 after 0 s; run-2 carries on" in console.export_text()


def test_a_failure_is_not_reported_as_a_stop() -> None:
    console = log_console()
    with pytest.raises(RuntimeError), Waiting(console, "run-3", may_take="x", on_stop="y"):
        raise RuntimeError("boom")
    assert "stopped waiting" not in console.export_text()


def test_reconcile_names_the_bill_it_waits_for_and_when_it_gives_up() -> None:
    settings = Settings(reconciliation_bill_retry_every=timedelta(minutes=30),
                        reconciliation_bill_wait_at_most=timedelta(days=2))
    assert "waiting for a worker" in reconcile_cli._waiting_for(None, 1.0)
    assert "chuchuang worker" in reconcile_cli._waiting_for(None, reconcile_cli.NO_WORKER_HINT_AFTER + 1)
    assert reconcile_cli._may_take(settings, None) == "seconds once the bill is out; up to 2 days while WeChat Pay makes it"
    waiting = ReconciliationProgress(day="2026-12-03", status="waiting_for_bill", bill_requests=2,
                                     waiting_since=datetime(2026, 12, 3, 8, 34, tzinfo=UTC))
    assert reconcile_cli._waiting_for(waiting, 0) == (
        "waiting for WeChat Pay's bill of 2026-12-03 (asked 2 times; it comes out after 10:00 Beijing time the next day)")
    assert reconcile_cli._may_take(settings, waiting) == (
        "until the bill is out: asks every 30 min, gives up at 2026-12-05 16:34 Beijing time")
