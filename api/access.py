"""Who may call each route, declared on the route itself so a test can read it.

Every route carries exactly one kind of declaration among its dependencies:

- `require_roles(*roles)` (api/auth.py): a bearer token of one of these roles; anyone else
  gets 401 (no or a bad token) or 403 (another role). `require_roles(*ROLES)` (`signed_in`) is
  "any signed-in user"; the route then scopes what it answers through api/views.py.
- `public(why)`: no token needed, and the reason is written down (partner webhooks checked by
  signature, health checks, the login itself, the public outlet map).
- `optional_roles(*roles)`: anonymous callers are allowed (the route checks something else,
  e.g. it creates the account), but a token of any other role is refused with 403.

`route_access(route)` reads the declaration back; tests/test_route_roles.py walks the whole
route table with it and fails on any route that declares nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.routing import APIRoute

ACCESS_ATTRIBUTE = "__chuchuang_access__"

ROLES = ("buyer", "promoter", "supplier", "outlet_staff", "support", "operator")
STAFF_ROLES = ("supplier", "outlet_staff", "support", "operator")
PLATFORM_STAFF = ("support", "operator")  # the platform's own people: review, suspend, settle


@dataclass(frozen=True)
class Access:
    roles: frozenset[str]  # roles whose token the route accepts
    anonymous: bool = False  # callable without any token
    why: str = ""  # for public and optional routes: why no token is needed

    def allows(self, role: str | None) -> bool:
        return self.anonymous if role is None else role in self.roles


def declare(dependency, access: Access):
    """Mark a dependency callable as an access declaration."""
    setattr(dependency, ACCESS_ATTRIBUTE, access)
    return dependency


def public(why: str):
    """A route anybody may call, with or without a token. `why` is required and kept in the
    declaration, so the route table says why each open route is open."""
    if not why.strip():
        raise ValueError("say why the route needs no token")

    def no_check() -> None:
        return None

    return declare(no_check, Access(frozenset(ROLES), anonymous=True, why=why))


def _declarations(dependant, seen: set[int]) -> list[Access]:
    found = []
    for sub in dependant.dependencies:
        call = sub.call
        access = getattr(call, ACCESS_ATTRIBUTE, None)
        if access is not None:
            found.append(access)
        if id(sub) not in seen:
            seen.add(id(sub))
            found.extend(_declarations(sub, seen))
    return found


def route_access(route) -> Access | None:
    """The route's declaration (several combine: every one must allow), or None if it has none.
    `route` is an APIRoute or FastAPI's RouteContext of an included route (whose dependant
    carries the including routers' dependencies too)."""
    found = _declarations(route.dependant, set())
    if not found:
        return None
    roles = frozenset.intersection(*(a.roles for a in found))
    return Access(roles, anonymous=all(a.anonymous for a in found),
                  why="; ".join(a.why for a in found if a.why))


def api_routes(app) -> list:
    """Every API route as served, with the path and dependencies it has once included."""
    try:  # FastAPI >= 0.130 keeps included routers as lazy branches
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI flattens them into app.routes
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [ctx for ctx in iter_route_contexts(app.routes) if isinstance(ctx.original_route, APIRoute)]


def access_table(app) -> dict[tuple[str, str], Access | None]:
    """(method, path) → declaration, for every API route of the app, in the schema or not."""
    table = {}
    for route in api_routes(app):
        for method in sorted(route.methods):
            table[(method, route.path)] = route_access(route)
    return table


def undeclared(app) -> list[tuple[str, str]]:
    return [key for key, access in access_table(app).items() if access is None]
