"""Shared fixtures: a real PostgreSQL (embedded, or DATABASE_URL), Temporal's time-skipping
test server, the sandbox and the API as in-process ASGI apps speaking real HTTP to each other."""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.auth import issue_token
from db.migrate import upgrade
from db.all_models import Base
from integrations.http import clear_routes, make_client, route_to_app
from settings import Settings
from tests.helpers import TEST_MASTER_KEY, end_workflows

SANDBOX_URL = "http://sandbox.test"
API_URL = "http://api.test"


def _test_server_binary() -> str | None:
    here = Path(sys.executable).parent / "temporal-test-server"
    return str(here) if here.exists() else shutil.which("temporal-test-server")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    if os.environ.get("DATABASE_URL"):
        base = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
        name = f"chuchuang_test_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    else:
        from db.embedded import start_embedded_postgres

        url = start_embedded_postgres(tmp_path_factory.mktemp("pg") / "data", "chuchuang_test")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url):
    engine = sa.create_engine(database_url, pool_size=20, max_overflow=40)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def clean_db(engine):
    """Empty every table. An activity of the previous test may still be finishing its
    transaction; the TRUNCATE then loses a deadlock (or waits on a lock) and is simply tried
    again once that transaction is over."""
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    for attempt in range(1, 31):
        try:
            with engine.begin() as c:
                c.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                c.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            break
        except sa.exc.OperationalError as e:
            if attempt == 30 or not isinstance(e.orig, (psycopg.errors.DeadlockDetected,
                                                        psycopg.errors.LockNotAvailable)):
                raise
            time.sleep(0.2)
    yield


@pytest.fixture(scope="session")
def settings(tmp_path_factory, database_url) -> Settings:
    return Settings(
        _env_file=None, data_dir=tmp_path_factory.mktemp("data"), database_url=database_url,
        sandbox_url=SANDBOX_URL, public_base_url=API_URL, task_queue=f"test-{uuid.uuid4().hex[:8]}",
        jwt_secret="test-secret-test-secret-test-secret-0123456789", master_key=TEST_MASTER_KEY,
        # POST /orders holds the request until the prepay exists, as tests of stock, faults and
        # money expect (a shared 2-core machine is slow); tests of the 202 answer set it to 0
        order_prepay_wait_seconds=20.0,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def temporal_env(settings):
    """One time-skipping test server per test module: the server leaks the time-skipping lock
    of an activity still in flight when its workflow ends early, and then no timer fires
    again on it. A fresh server per module keeps such a leak from stalling unrelated tests.
    Payloads are encrypted as in production (integrations.temporal.data_converter)."""
    from integrations.temporal import data_converter, ensure_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_test_server_binary(), data_converter=data_converter(settings))

    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def sandbox_app(settings):
    from sandbox.app import create_app
    from sandbox.credentials import load_or_create

    app = create_app(load_or_create(settings.sandbox_dir), notify_retry_scale=0.001, settle_delay=0.3,
                     callback_client=lambda: make_client(timeout=5.0))
    route_to_app(SANDBOX_URL, app)
    return app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(settings, sessions, temporal_env, sandbox_app):
    """API + worker + sandbox wired together; yields the API app."""
    from api.app import create_app
    from worker import build_worker

    api_app = create_app(settings, sessions=sessions, temporal_client=temporal_env.client)
    route_to_app(API_URL, api_app)
    with ThreadPoolExecutor(max_workers=32) as executor:
        worker = build_worker(temporal_env.client, settings, executor, sessions=sessions)
        async with worker:
            yield api_app
    clear_routes()


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack, sandbox_app, clean_db, temporal_env, sessions):
    # Some partner tests route these origins elsewhere and clear the table; put ours back.
    route_to_app(SANDBOX_URL, sandbox_app)
    route_to_app(API_URL, stack)
    stack.state.viewer_limits.reset()  # ids restart with the emptied database
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack), base_url=API_URL) as client:
        yield client
    await _stop_order_workflows(temporal_env.client, sessions)


async def _stop_order_workflows(client, sessions) -> None:
    """Processes a test left running would wake up in a later test (time skipping is shared by
    the whole module) and find their rows truncated, and make every later skip slower: end
    them with the test."""
    from db.models import Order, Product, Promoter, Supplier
    from db.order_models import Refund
    from db.withdrawal_models import Withdrawal
    from db.settlement_models import SettlementRun
    from db.reconciliation_models import ReconciliationRun
    from db.channels_models import ChannelsEvent

    with sessions() as s:
        ids = [f"order-{n}" for n in s.scalars(sa.select(Order.order_no))]
        ids += [f"refund-{n}" for n in s.scalars(sa.select(Refund.refund_no))]
        ids += [f"promoter-{n}" for n in s.scalars(sa.select(Promoter.id))]
        ids += [f"supplier-{n}" for n in s.scalars(sa.select(Supplier.id))]
        ids += [f"product-{n}" for n in s.scalars(sa.select(Product.id))]
        ids += [f"withdrawal-{n}" for n in s.scalars(sa.select(Withdrawal.id))]
        ids += list(s.scalars(sa.select(SettlementRun.workflow_id)))
        ids += list(s.scalars(sa.select(ReconciliationRun.workflow_id)))
        ids += [f"shop-order-{n}" for n in s.scalars(sa.select(ChannelsEvent.shop_order_id).distinct())]
    await end_workflows(client, ids)


@pytest_asyncio.fixture(loop_scope="session")
async def sandbox(sandbox_app):
    route_to_app(SANDBOX_URL, sandbox_app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox_app), base_url=SANDBOX_URL) as client:
        yield client


@pytest.fixture
def demo(sessions, clean_db):
    from cli.seed import seed_demo

    with sessions.begin() as s:
        return seed_demo(s)


@pytest.fixture
def token(settings, sessions):
    """A bearer header for a user, through a real login session (as /auth/* opens them), so
    every check on each request (session, active, role) runs as in production.
    A user id with no row yet (a reviewer a test only names) gets one, with that role. A role
    the user does not have (the suite's many "someone with role R is refused" checks, written
    as `token(1, "promoter")`) gets a stand-in user of that role: a real token can only carry
    its user's role; tests/test_sessions_keys.py shows such a token refused (ROLE_CHANGED)."""
    from db.models import User

    def make(user_id: int, role: str) -> dict[str, str]:
        with sessions.begin() as s:
            user = s.get(User, user_id)
            if user is None:
                s.add(User(id=user_id, role=role, display_name=f"{role} {user_id}"))
                s.flush()
            elif user.role != role:
                stand_in = User(role=role, display_name=f"{role} standing in for {user_id}")
                s.add(stand_in)
                s.flush()
                user_id = stand_in.id
            return {"Authorization": f"Bearer {issue_token(settings, s, user_id, role)}"}

    return make
