"""The transactional outbox for the Channels shop: every window change (mount, hide/unhide,
remove, take-off, back on sale) and every listing change (delist, relist, stock) calls
`window_changed` / `product_changed` on the session of the change, so the row commits with the
change or not at all. The row is keyed by the business object, so repeated changes are one row
(its `version` bumped); `ChannelsSyncWorkflow` drains it against the Channels API.

After a commit that wrote rows, the process wakes the `channels-sync` workflow with the
signal-with-start it installed (`install`): the worker through its event loop and Temporal
client, the API after the response (api/channels_wake.py, which collects wakes per request). A lost wake is picked up by the next one or by the
scheduled reconcile, which also sweeps the outbox."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import event, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.channels_models import ChannelsOutbox

log = structlog.get_logger()
_SESSION_FLAG = "channels_outbox_written"


def _upsert(s: Session, *, key: str, kind: str, product_id: int, window_id: int | None, reason: str) -> None:
    s.execute(insert(ChannelsOutbox).values(key=key, kind=kind, product_id=product_id, window_id=window_id,
                                            reason=reason[:40], status="pending")
              .on_conflict_do_update(index_elements=["key"], set_={
                  "reason": reason[:40], "status": "pending", "version": ChannelsOutbox.version + 1,
                  "attempts": 0, "last_error": None, "updated_at": func.now(), "done_at": None}))
    if not s.info.get(_SESSION_FLAG):
        s.info[_SESSION_FLAG] = True
        event.listen(s, "after_commit", _after_commit, once=True)
        event.listen(s, "after_rollback", _after_rollback, once=True)


def window_changed(s: Session, window_id: int, product_id: int, reason: str) -> None:
    """A window item changed (or went away): the shop's copy of that window must follow."""
    _upsert(s, key=f"window:{window_id}:{product_id}", kind="window", product_id=product_id,
            window_id=window_id, reason=reason)


def product_changed(s: Session, product_id: int, reason: str) -> None:
    """A product's listing or stock changed: the shop's product must follow."""
    _upsert(s, key=f"product:{product_id}", kind="product", product_id=product_id, window_id=None, reason=reason)


def _after_commit(s: Session) -> None:
    s.info.pop(_SESSION_FLAG, None)
    wake()


def _after_rollback(s: Session) -> None:
    s.info.pop(_SESSION_FLAG, None)


# --- waking the sync workflow -------------------------------------------------------------------
_request_flag: contextvars.ContextVar[list | None] = contextvars.ContextVar("channels_outbox_request", default=None)


class _Waker:
    def __init__(self, loop: asyncio.AbstractEventLoop, start: Callable[[], Awaitable[None]]):
        self.loop, self.start = loop, start
        self.running = False
        self.again = False

    def kick(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._schedule)
        except RuntimeError:  # loop closed (shutdown)
            pass

    def _schedule(self) -> None:
        if self.running:
            self.again = True
            return
        self.running = True
        self.loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self.again = False
                try:
                    await self.start()
                except Exception as err:  # noqa: BLE001 - the reconcile sweep picks the rows up
                    log.warning("channels_sync.wake_failed", error=repr(err))
                if not self.again:
                    return
        finally:
            self.running = False


_waker: _Waker | None = None


def install(start: Callable[[], Awaitable[None]]) -> None:
    """Wake with `start()` (signal-with-start) on the current event loop after outbox commits."""
    global _waker
    _waker = _Waker(asyncio.get_running_loop(), start)


def collect_wakes(flag: list) -> contextvars.Token:
    """Inside an API request: wakes are collected in `flag` and sent once after the response."""
    return _request_flag.set(flag)


def stop_collecting(token: contextvars.Token) -> None:
    _request_flag.reset(token)


def wake() -> None:
    flag = _request_flag.get()
    if flag is not None:  # inside an API request: the middleware wakes after the response
        flag.append(True)
        return
    if _waker is not None:
        _waker.kick()
