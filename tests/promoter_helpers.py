"""Helpers the promoter, assessment and commission-policy tests share."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import datetime, timedelta

import pytest_asyncio
from sqlalchemy import select, text
from temporalio.service import RPCError

from db.models import Order, Promoter, User
from db.promoter_models import Revival
from domain.promoters import id_check_char
from workflows import promoter_lifecycle, revival
from tests.helpers import ADDRESS, end_workflows, keep_run_history  # noqa: F401 - re-exported for the promoter tests


def id_number(body17: str = "11010519900307123") -> str:
    return body17 + id_check_char(body17)


def wrong_id_number(body17: str = "11010519900307123") -> str:
    return body17 + ("1" if id_check_char(body17) != "1" else "2")


def new_buyer(sessions, n: int, *, name: str = "买家") -> int:
    with sessions.begin() as s:
        user = User(role="buyer", openid=f"oPROMO{n:022d}", display_name=f"{name}{n}")
        s.add(user)
        s.flush()
        return user.id


def signup_body(n: int = 0, **extra) -> dict:
    body = {"agreement_version": "2026-01", "agreement_accepted": True, "real_name": "王小明",
            "id_number": id_number(f"11010519900307{n:03d}"), "channels_finder_id": f"sph_{n:04d}",
            "nickname": f"推客{n}"}
    return body | extra


async def become_promoter(api, token, sessions, n: int, **extra) -> dict:
    user_id = new_buyer(sessions, n)
    r = await api.post("/promoters", json=signup_body(n, **extra), headers=token(user_id, "buyer"))
    assert r.status_code == 201, r.text
    out = r.json()
    out["headers"] = {"Authorization": f"Bearer {out['access_token']}"}
    return out


_serial = itertools.count(1)


def completed_orders(sessions, promoter_id: int, window_id: int, at: datetime, count: int,
                     *, buyer_user_id: int | None = None, total_fen: int = 1_000) -> None:
    """Completed orders attributed to the window, as the order workflow leaves them."""
    with sessions.begin() as s:
        if buyer_user_id is None:
            buyer = User(role="buyer", openid=f"oSHOPPER{os.getpid()}x{next(_serial):010d}")
            s.add(buyer)
            s.flush()
            buyer_user_id = buyer.id
        for _ in range(count):
            s.add(Order(order_no=f"T{promoter_id:04d}{next(_serial):012d}",
                        buyer_user_id=buyer_user_id, window_id=window_id, promoter_id=promoter_id,
                        status="COMPLETED", total_fen=total_fen, shipping_address=ADDRESS,
                        paid_at=at, completed_at=at))


async def eventually(check, timeout: float = 15.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def cycle_progress(env, promoter_id: int, cycle_no: int | None = None):
    handle = env.client.get_workflow_handle(promoter_lifecycle.workflow_id(promoter_id))
    last: list = []

    async def ready():
        try:
            p = await handle.query(promoter_lifecycle.PromoterLifecycleWorkflow.progress)
        except RPCError:
            return None
        last.append(p)
        if p is None or p.cycle_started_at is None and p.status != "lapsed":
            return None
        return p if cycle_no is None or p.cycle_no == cycle_no else None

    try:
        return await eventually(ready, what=f"cycle {cycle_no} of promoter {promoter_id}")
    except AssertionError as err:
        raise AssertionError(f"{err}; last progress: {last[-1] if last else None}") from None


_id_blocks = itertools.count(1_000, 1_000)


@pytest_asyncio.fixture(loop_scope="session")
async def stop_promoter_workflows(temporal_env, sessions, clean_db):
    """Workflow ids are per promoter, and the test server lives for a whole module while
    the tables restart their ids: give each test its own block of promoter ids, and stop this
    test's lifecycles (they run forever) when it ends."""
    with sessions.begin() as s:
        s.execute(text("SELECT setval('promoters_id_seq', :v)"), {"v": next(_id_blocks)})
    yield
    with sessions() as s:
        ids = list(s.scalars(select(Promoter.id)))
        revivals = list(s.execute(select(Revival.promoter_id, Revival.n)).all())
    wids = [promoter_lifecycle.workflow_id(i) for i in ids]
    wids += [revival.workflow_id(i, n) for i, n in revivals]
    wids += [revival.workflow_id(i, n) for i in ids for n in (1, 2, 3)]
    await end_workflows(temporal_env.client, wids, "test over")


def plus(at: datetime, **delta) -> datetime:
    return at + timedelta(**delta)
