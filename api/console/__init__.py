"""The operations console (/console, server-rendered with Jinja2 and htmx, charts by Apache
ECharts; both vendored under static/vendor from the npm registry) and the dashboards' JSON API
(/dashboards)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.console.session import LoginRequired

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    from api.console import dashboards, pages

    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(dashboards.router)
    app.include_router(pages.router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired):
        if request.headers.get("hx-request"):
            return RedirectResponse("/console/login", status_code=200, headers={"HX-Redirect": "/console/login"})
        return RedirectResponse("/console/login", status_code=303)
