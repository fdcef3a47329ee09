from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.access import public
from api.errors import ApiError

router = APIRouter(tags=["ops"])


@router.get("/healthz", dependencies=[Depends(public("load balancers and orchestrators probe it"))])
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(public(
    "scraped by Prometheus; with METRICS_TOKEN set (production requires it) only with that bearer token"))])
def metrics(request: Request) -> Response:
    """Prometheus metrics; with METRICS_TOKEN set only for `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = request.app.state.settings.metrics_token
    if expected:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "UNAUTHORIZED", "/metrics needs the metrics token")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
