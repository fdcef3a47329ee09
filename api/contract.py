"""The API's contract, applied once to every route when the app is built (api/app.py):

* `guard_inputs`, an app-wide dependency: text inputs (query, path, header parameters and every
  string in a JSON body) refuse NUL, other control characters and lone surrogates; integers
  stay within a 32-bit signed range (every id, limit, offset and quantity fits, and nothing
  reaches PostgreSQL out of range), money (`*_fen`) within ±(2^53 − 1) (exact in JavaScript,
  fits BIGINT); paging never negative; JSON numbers must be finite. Refusals are 422
  VALIDATION_ERROR in the one error shape, naming the field.
* `document`: the OpenAPI document lists, on every operation, the error answers it can give
  (400/401/403/404/409/422/429/503 as applicable), all with the one `Error` schema the handlers
  produce (api/errors.py), and shows the input bounds above in the request schemas.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
import sys
import types
import typing
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.errors import ApiError, ErrorOut

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
FEN_MIN, FEN_MAX = -(2**53 - 1), 2**53 - 1  # money in fen: a JavaScript-safe integer, fits BIGINT
# C0 controls but tab, newline and carriage return; DEL and the C1 controls; lone surrogates
# (a JSON "\ud800" decodes to one and cannot be stored as UTF-8).
FORBIDDEN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
TEXT_PATTERN = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"  # the documented form of the rule above
PAGING = ("limit", "offset")  # query parameters that reach SQL's LIMIT/OFFSET: never negative


# --- the input guard ------------------------------------------------------------------------
def _problem(loc: list, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _check_value(value: Any, loc: list, problems: list) -> None:
    if isinstance(value, str):
        if FORBIDDEN_TEXT.search(value):
            problems.append(_problem(loc, "must not contain NUL or other control characters", "control_characters"))
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        low, high = _bounds(loc[-1] if loc else None)
        if not low <= value <= high:
            problems.append(_problem(loc, f"must be between {low} and {high}", "out_of_range"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append(_problem(loc, "must be a finite number", "finite_number"))
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, [*loc, "<key>"], problems)
            _check_value(item, [*loc, key], problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, [*loc, i], problems)


def _bounds(name: Any) -> tuple[int, int]:
    return (FEN_MIN, FEN_MAX) if isinstance(name, str) and name.endswith("_fen") else (INT_MIN, INT_MAX)


def _is_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, set, typing.Annotated):
        return any(_is_int(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


def _declared_params(dependant: Dependant):
    """Every query, path, header and cookie parameter of a route and its dependencies."""
    for kind, fields in (("query", dependant.query_params), ("path", dependant.path_params),
                         ("header", dependant.header_params), ("cookie", dependant.cookie_params)):
        for field in fields:
            yield kind, field
    for sub in dependant.dependencies:
        yield from _declared_params(sub)


def _raw_values(request: Request, kind: str, name: str) -> list[str]:
    if kind == "query":
        return request.query_params.getlist(name)
    if kind == "path":
        value = request.path_params.get(name)
        return [] if value is None else [str(value)]
    if kind == "header":
        return request.headers.getlist(name)
    value = request.cookies.get(name)
    return [] if value is None else [value]


async def guard_inputs(request: Request) -> None:
    problems: list[dict[str, Any]] = []
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        for kind, field in _declared_params(route.dependant):
            name = field.alias
            if kind == "header" and getattr(field.field_info, "convert_underscores", True):
                name = name.replace("_", "-")
            as_int = _is_int(field.field_info.annotation)
            for raw in _raw_values(request, kind, name):
                _check_value(raw, [kind, field.alias], problems)
                if as_int:
                    try:
                        number = int(raw.strip())
                    except ValueError:
                        continue  # not a number: the parameter's own validation says so
                    _check_value(number, [kind, field.alias], problems)
                    if kind == "query" and field.alias in PAGING and number < 0:
                        problems.append(_problem([kind, field.alias], "must be at least 0", "too_small"))
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and "json" in request.headers.get("content-type", ""):
        body = await request.body()
        if body:
            try:
                _check_value(json.loads(body), ["body"], problems)
            except (ValueError, RecursionError):
                pass  # not JSON: FastAPI answers its own 422
    if problems:
        raise ApiError(422, "VALIDATION_ERROR",
                       "; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in problems),
                       details=problems)


# --- the OpenAPI document -------------------------------------------------------------------
DESCRIPTIONS = {
    400: "Bad request: a body that cannot be parsed, or a partner notification we do not accept",
    401: "No bearer token, or one that is invalid or expired",
    403: "The token's role may not do this",
    404: "No such resource, or not one this caller may see",
    409: "The resource is in a state that does not allow this",
    422: "The request is not valid: the fields are named in `details`",
    429: "Too many requests: retry later",
    503: "A dependency (database, process engine, WeChat) is not answering: retry later (Retry-After)",
}
_HELPER_CODES = {  # helpers whose use means the route can answer these
    "not_found": {404}, "run_update": {409, 422}, "update_refused": {409, 422, 503},
    "require_roles": {401, 403}, "current_principal": {401}, "_wechat_fail": {400, 401},
}
_RAISED = re.compile(r"ApiError\(\s*(\d{3})")
_CALLED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _source_codes(func: Any, seen: set[int]) -> set[int]:
    """Statuses a function raises (ApiError(4xx...) or a helper above), following the calls it
    makes to functions of its own module."""
    func = inspect.unwrap(func)
    if id(func) in seen or not callable(func):
        return set()
    seen.add(id(func))
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return set()
    codes = {int(c) for c in _RAISED.findall(source)}
    module = sys.modules.get(getattr(func, "__module__", ""), None)
    for name in set(_CALLED.findall(source)):
        codes |= _HELPER_CODES.get(name, set())
        target = getattr(module, name, None) if module else None
        if inspect.isfunction(target) and target.__module__ == func.__module__:
            codes |= _source_codes(target, seen)
    return codes


def _dependant_codes(dependant: Dependant, seen: set[int]) -> set[int]:
    codes = set()
    if dependant.call is not None and dependant.call is not guard_inputs:  # its 422 follows the inputs
        name = getattr(dependant.call, "__qualname__", "")
        if name.startswith("require_roles"):
            codes |= {401, 403}
        codes |= _source_codes(dependant.call, seen)
    for sub in dependant.dependencies:
        codes |= _dependant_codes(sub, seen)
    return codes


def route_error_codes(route) -> set[int]:
    """`route`: an APIRoute or the RouteContext FastAPI builds it into (same attributes)."""
    codes = _dependant_codes(route.dependant, set()) | {503}
    if 401 in codes:
        codes.add(403)  # every authenticated route refuses a role it does not serve
    if route.dependant.path_params:
        codes.add(404)
    if any(True for _ in _declared_params(route.dependant)) or route.dependant.body_params:
        codes.add(422)
    if route.dependant.body_params:
        codes.add(400)  # a body that is not even JSON
    return {c for c in codes if c in DESCRIPTIONS}


def _walk_refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _walk_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk_refs(value, found)


def _closure(names: set[str], schemas: dict) -> set[str]:
    todo, done = list(names), set()
    while todo:
        name = todo.pop()
        if name in done or name not in schemas:
            continue
        done.add(name)
        more: set[str] = set()
        _walk_refs(schemas[name], more)
        todo.extend(more - done)
    return done


def _bound_inputs(node: Any, schemas: dict, shared: set[str], name: str | None = None) -> Any:
    """Show the guard's rules in a request schema: integer bounds, the text pattern. A component
    also used in answers is copied (`<name>-Request`) so answers keep their own schema."""
    if isinstance(node, list):
        return [_bound_inputs(v, schemas, shared, name) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        target = ref.rsplit("/", 1)[1]
        if target in shared:
            copy_name = f"{target}-Request"
            if copy_name not in schemas:
                schemas[copy_name] = {}  # placeholder against recursion
                schemas[copy_name] = _bound_inputs(copy.deepcopy(schemas[target]), schemas, shared)
            return {**node, "$ref": f"#/components/schemas/{copy_name}"}
        return node
    out = {k: ({p: _bound_inputs(s, schemas, shared, p) for p, s in v.items()} if k == "properties"
               and isinstance(v, dict) else _bound_inputs(v, schemas, shared, name)) for k, v in node.items()}
    if out.get("type") == "integer":
        low, high = _bounds(name)
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
        out["minimum"], out["maximum"] = max(out["minimum"], low), min(out["maximum"], high)
    elif out.get("type") == "string" and not ({"pattern", "enum", "format", "const"} & out.keys()):
        out["pattern"] = TEXT_PATTERN
    return out


def _at_least_zero(schema: dict) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            option["minimum"] = max(option.get("minimum", 0), 0)


def document(app: FastAPI) -> None:
    """Make `app.openapi()` describe the error model and the input bounds for every route."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = build()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        error = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error.pop("$defs", {}))
        schemas["Error"] = error
        error_ref = {"$ref": "#/components/schemas/Error"}
        routes = {(r.path_format, m.lower()): r for r in routing.iter_route_contexts(app.routes)
                  if isinstance(r.original_route, APIRoute) for m in r.methods}
        answered: set[str] = set()
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for status, response in responses.items():
                    if status.startswith("2"):
                        _walk_refs(response, answered)
                route = routes.get((path, method))
                codes = route_error_codes(route) if route else {422, 503}
                responses.pop("422", None)  # FastAPI's HTTPValidationError is not what we answer
                declared = {str(c) for c in getattr(route, "responses", {}) or {}}
                for code in declared:  # a route's own error answer with no body of its own: ours
                    if code[0] in "45" and "content" not in responses.get(code, {"content": 1}):
                        responses[code]["content"] = {"application/json": {"schema": error_ref}}
                for code in sorted(codes):
                    if str(code) in declared:
                        continue  # the route's own answer (a partner's protocol: webhooks)
                    responses[str(code)] = {"description": DESCRIPTIONS[code],
                                            "content": {"application/json": {"schema": error_ref}}}
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        shared = _closure(answered, schemas)
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if "schema" in parameter:
                        parameter["schema"] = _bound_inputs(parameter["schema"], schemas, shared,
                                                            parameter.get("name"))
                        if parameter.get("in") == "query" and parameter.get("name") in PAGING:
                            _at_least_zero(parameter["schema"])
                body = operation.get("requestBody", {}).get("content", {})
                for media in body.values():
                    if "schema" in media:
                        media["schema"] = _bound_inputs(media["schema"], schemas, shared)
        # request-only components are bounded in place
        requested: set[str] = set()
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                _walk_refs(operation.get("requestBody", {}), requested)
        for name in _closure(requested, schemas) - shared:
            schemas[name] = _bound_inputs(schemas[name], schemas, shared)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
