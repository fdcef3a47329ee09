"""Schemathesis over our own OpenAPI document, in process, with a token per role: no answer is
a 5xx, and every answer (errors included) has a status, content type and body the document
declares for that operation. Bounded and derandomized: first every operation with a valid-shaped
request under every role's token and none (FUZZ_EXAMPLES each), then invalid requests
(FUZZ_NEGATIVE_EXAMPLES per operation) while the time budget (FUZZ_BUDGET_SECONDS) lasts;
`make fuzz` runs the same with more examples and a longer budget."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import API_URL
from tests.helpers import make_user

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1"))  # valid-shaped requests per operation and role
NEGATIVE_EXAMPLES = int(os.environ.get("FUZZ_NEGATIVE_EXAMPLES", str(2 * EXAMPLES)))  # invalid ones per operation
BUDGET = float(os.environ.get("FUZZ_BUDGET_SECONDS", "30"))
ROLES = ("buyer", "promoter", "supplier", "outlet_staff", "support", "operator")


def _tokens(demo, sessions, token) -> dict[str, dict[str, str]]:
    users = {"buyer": demo.buyer_user_id, "promoter": demo.promoter_user_id, "supplier": demo.supplier_user_id,
             "outlet_staff": make_user(sessions, "outlet_staff", "fuzz-staff"),
             "support": make_user(sessions, "support", "fuzz-support"),
             "operator": make_user(sessions, "operator", "fuzz-operator")}
    return {role: token(users[role], role) for role in ROLES} | {"anonymous": {}}


@pytest.mark.timeout(max(180, int(BUDGET) * 2))
async def test_every_operation_for_every_role_answers_as_documented_and_never_5xx(api, stack, demo, sessions, token,
                                                                                   settings, monkeypatch):
    monkeypatch.setattr(settings, "order_prepay_wait_seconds", 0.5)  # a placed order answers 202 at once
    schema = schemathesis.openapi.from_dict(stack.openapi())
    tokens = _tokens(demo, sessions, token)
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    seen: Counter = Counter()
    statuses: Counter = Counter()
    by_role: Counter = Counter()
    started = time.monotonic()

    def send(case, role: str):
        kwargs = case.as_transport_kwargs(base_url=API_URL, headers=tokens[role])
        request = {k: kwargs[k] for k in ("method", "url", "params", "headers", "cookies") if kwargs.get(k) is not None}
        for key in ("json", "content", "data", "files"):
            if key in kwargs:
                request[key] = kwargs[key]
        if "data" in request and not isinstance(request["data"], dict):
            request["content"] = request.pop("data")
        future = asyncio.run_coroutine_threadsafe(api.request(**request), loop)
        return future.result(timeout=60)

    def fuzz(operation, mode: GenerationMode, examples: int) -> None:
        # a valid-shaped case goes out with every role's token (and none); an invalid one with one
        roles = st.just(sorted(tokens)) if mode is GenerationMode.POSITIVE else st.sampled_from(sorted(tokens)).map(
            lambda r: [r])

        @given(case=operation.as_strategy(generation_mode=mode), roles=roles)
        @hsettings(max_examples=examples, deadline=None, database=None, derandomize=True,
                   phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def probe(case, roles):
            for role in roles:
                if mode is GenerationMode.NEGATIVE and time.monotonic() - started > BUDGET:
                    return  # the budget bounds the second pass; the first always covers everything
                response = send(case, role)
                seen[operation.label] += 1
                by_role[role] += 1
                statuses[response.status_code] += 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except (AssertionError, BaseExceptionGroup) as failure:  # schemathesis' FailureGroup
                    failures.append(f"{role} {operation.label} -> {response.status_code} {response.text[:300]}\n"
                                    f"   {str(failure).strip()[:600]}")

        try:
            probe()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # nothing in it can be made invalid

    def run() -> None:
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            fuzz(operation, GenerationMode.POSITIVE, EXAMPLES)  # every role's token, and none
        for operation in operations:  # then invalid input, while the budget lasts
            fuzz(operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)

    await asyncio.to_thread(run)
    elapsed = time.monotonic() - started
    print(f"fuzz: {sum(seen.values())} requests over {len(seen)} operations in {elapsed:.1f}s; "
          f"statuses {dict(statuses)}; per role {dict(by_role)}")
    assert not failures, f"{len(failures)} answers break the contract:\n" + "\n".join(failures[:40])
    assert not [s for s in statuses if s >= 500]
    operations = sum(1 for _ in schema.get_all_operations())
    assert len(seen) == operations, f"only {len(seen)} of {operations} operations were reached"
    assert set(by_role) == set(tokens)
