from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.access import public
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["ops"])


@router.get("/healthz", dependencies=[Depends(public("load balancers and orchestrators probe it"))])
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(public(
    "scraped by Prometheus; keep it on an internal network (issue 16: production mode)"))])
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
