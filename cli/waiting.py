"""What a `chuchuang` command shows while it waits: what it waits for, for how long so far, how
long it may take, and a bar when the work can be counted. On a terminal it is a live rich
progress line; elsewhere (a log, a pipe) a plain line each time what it waits for changes.

Ctrl-C (or SIGTERM / SIGHUP, see cli/main.py) stops the waiting, never the work: the command says
what keeps going (a Temporal workflow carries on by itself) and how to follow it again."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


QUERY_TIMEOUT_SECONDS = 5.0  # a query no worker answers: show "waiting for a worker" again after this


class Waiting:
    """`with Waiting(console, "reconciliation-2026-12-01", may_take="...") as w: w.update(...)`"""

    def __init__(self, console: Console, subject: str, may_take: str, on_stop: str = "") -> None:
        self.console = console
        self.subject = subject
        self.may_take = may_take
        self.on_stop = on_stop  # said when the user stops the wait: what keeps going, how to resume
        self.started = time.monotonic()
        self._last = ""
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.fields[subject]}[/bold] {task.description}"),
            BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[may_take]}[/dim]"),
            console=console, transient=False, refresh_per_second=4,
        )  # fmt: skip
        self.task = self.progress.add_task("", total=None, subject=subject, may_take=f"(may take {may_take})")

    def __enter__(self) -> Waiting:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()
        if kind is not None and not issubclass(kind, Exception):  # Ctrl-C, SIGTERM, cancelled
            self.console.print(f"[yellow]stopped waiting for {self.subject} after {self.elapsed():.0f} s[/yellow]"
                               + (f"; {self.on_stop}" if self.on_stop else ""))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, waiting_for: str, completed: int | None = None, total: int | None = None,
               may_take: str | None = None) -> None:
        """What it waits for now, the count done (and out of how many) when there is one."""
        if may_take is not None:
            self.may_take = may_take
        fields = {"description": waiting_for, "may_take": f"(may take {self.may_take})"}
        if completed is not None:
            fields["completed"] = completed
        self.progress.update(self.task, total=total, **fields)
        line = f"{self.subject}: {waiting_for} (may take {self.may_take})"
        if not self.console.is_terminal and line != self._last:
            self.console.print(line, highlight=False, markup=False)  # logs and pipes: one line per change
        self._last = line


async def query_or_none(handle, query, timeout: float = QUERY_TIMEOUT_SECONDS):
    """A workflow's progress query, None while no worker answers it. A Ctrl-C that arrives
    during the call still stops the command (the client may report it as an RPC error)."""
    import asyncio
    from datetime import timedelta

    try:
        return await handle.query(query, rpc_timeout=timedelta(seconds=timeout))
    except Exception:  # noqa: BLE001 - no worker has picked it up yet, or it is busy
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None
        return None


async def connect_temporal(settings, console: Console):
    """Our Temporal client, or None after saying where Temporal was expected."""
    from integrations.temporal import connect

    with console.status(f"connecting to Temporal at {settings.resolved_temporal_address} ..."):
        try:
            return await connect(settings)
        except RuntimeError as err:
            console.print(f"[red]cannot reach Temporal at {settings.resolved_temporal_address}[/red] ({err}); "
                          "is `make dev` running (or TEMPORAL_ADDRESS set)?")
            return None
