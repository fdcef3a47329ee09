"""The documentation stays true to the code: every setting documented (and no setting that does
not exist), every route, `chuchuang` command, make target and file the README and docs/ name exists,
and every link points at a file (and heading) inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from sqlalchemy.orm import sessionmaker

from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
# routes served outside the OpenAPI schema
UNLISTED_ROUTES = {("GET", "/metrics")}

PATH = r"(/[A-Za-z0-9_{}/.$\-]*)"
ROUTE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (?:https?://[^/\s`]+|\$API|\$SANDBOX)?" + PATH)
CURL = re.compile(r"\bcurl -s (?:-X (GET|POST|PUT|PATCH|DELETE) )?(?:\$API|\$SANDBOX|https?://[^/\s`]+)" + PATH)
COMMAND = re.compile(r"(?:^|`|bin/)chuchuang ([a-z][a-z-]*)(?: ([a-z]+))?", re.M)
MAKE = re.compile(r"(?:^|`|\S=\S* )make ([a-z]+)\b", re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def documented_settings() -> set[str]:
    """Names in the first column of the settings tables."""
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text(SETTINGS_PAGE), flags=re.M))


def test_every_setting_is_documented():
    fields = {name.upper() for name in Settings.model_fields}
    documented = documented_settings()
    assert sorted(fields - documented) == [], "add these settings to docs/settings.md"
    assert sorted(documented - fields) == [], "docs/settings.md names settings that do not exist"


def _as_pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{[^}]+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> list[tuple[str, re.Pattern]]:
    """(method, path pattern) of our API and of the sandbox."""
    from api.app import create_app
    from sandbox.app import create_app as create_sandbox
    from sandbox.credentials import load_or_create

    data = tmp_path_factory.mktemp("docs-data")
    ours = create_app(Settings(data_dir=data), sessions=sessionmaker(), pay=object())
    sandbox = create_sandbox(load_or_create(data / "sandbox"), state_path=data / "sandbox" / "state.sqlite3")
    found = set(UNLISTED_ROUTES)
    for app in (ours, sandbox):
        for path, operations in app.openapi()["paths"].items():
            found |= {(method.upper(), path) for method in operations}
    return [(method, _as_pattern(path)) for method, path in sorted(found)]


def test_every_route_named_exists(routes):
    missing = []
    for page in PAGES:
        named = ROUTE.findall(text(page)) + [(m or "GET", p) for m, p in CURL.findall(text(page))]
        for method, path in named:
            concrete = re.sub(r"\{[^}]+\}|\$\w+", "x", path.rstrip("."))
            if not any(m == method and pattern.match(concrete) for m, pattern in routes):
                missing.append(f"{page.name}: {method} {path}")
    assert missing == []


def test_every_command_named_exists():
    from cli.main import app

    group = typer.main.get_command(app)
    missing = []
    for page in PAGES:
        for command, sub in COMMAND.findall(text(page)):
            found = group.commands.get(command)
            subcommands = getattr(found, "commands", None)
            if found is None or (subcommands is not None and sub not in subcommands):
                missing.append(f"{page.name}: chuchuang {command} {sub}".strip())
    assert missing == []


def test_every_make_target_named_exists():
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    missing = [f"{page.name}: make {t}" for page in PAGES for t in MAKE.findall(text(page)) if t not in targets]
    assert missing == []


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", text(page), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_stay_inside_the_repository():
    wrong = []
    for page in PAGES:
        for target in LINK.findall(text(page)):
            if re.match(r"^[a-z]+:", target):
                wrong.append(f"{page.name}: {target} leaves the repository")
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or ROOT not in linked.parents:
                wrong.append(f"{page.name}: {target} is not a file of the repository")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                wrong.append(f"{page.name}: {target} has no such heading")
    assert wrong == []
    assert "shared/DESIGN.md" not in "".join(text(p) for p in PAGES)


def test_every_file_named_exists():
    """`dir/file.py` in backticks is a file of the repository (catches paths of an old layout)."""
    named = re.compile(r"`((?:[A-Za-z_.]+/)+[A-Za-z_0-9.]+\.(?:py|md|yml|json|ini))`")
    missing = [f"{page.name}: {path}" for page in PAGES for path in named.findall(text(page))
               if not (ROOT / path).exists()]
    assert missing == []
