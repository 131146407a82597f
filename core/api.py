"""JSON routes declared with pydantic models, validated at the edge, described by OpenAPI.

A route says who may call it and what it takes and returns; the wrapper
authenticates, checks the role, parses the body (answering 400/422 with the
failing fields), and serialises the result. ``/api/openapi.json`` is built from
the same declarations, so the description cannot drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from core.auth import Identity, identity_of
from core.models import Role

MAX_JSON_BODY = 1024 * 1024

M = TypeVar("M", bound=BaseModel)
JsonHandler = Callable[..., Awaitable[Any]]


class ApiError(web.HTTPException):
    """An error answered as ``{"error": ..., "detail": ...}`` with the given status."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        self.status_code = status
        body = {"error": message}
        if detail is not None:
            body["detail"] = detail
        super().__init__(text=json.dumps(body, ensure_ascii=False), content_type="application/json")


def require(request: web.Request, *roles: Role) -> Identity:
    """The caller's identity, or 401/403. With no roles, any signed-in staff member."""
    identity = identity_of(request)
    if identity is None or identity.role is None:
        raise ApiError(401, "authentication required")
    if roles and not identity.has_role(*roles):
        raise ApiError(403, "your role may not do this", {"required": [r.value for r in roles]})
    return identity


@dataclass
class Route:
    method: str
    path: str
    summary: str
    tag: str
    roles: tuple[Role, ...] | None
    body: type[BaseModel] | None
    response: Any
    status: int
    query: type[BaseModel] | None


@dataclass
class ApiRegistry:
    routes: list[Route] = field(default_factory=list)
    raw_content_types: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(
        self,
        router: web.UrlDispatcher,
        method: str,
        path: str,
        handler: JsonHandler,
        *,
        summary: str,
        tag: str,
        roles: tuple[Role, ...] | None = (),
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
    ) -> None:
        """Mount ``handler(request, **parsed)``; ``roles=None`` makes the route public.

        The handler receives ``body=`` and ``query=`` models when declared and
        ``identity=`` when the route is not public.
        """
        route = Route(method.upper(), path, summary, tag, roles, body, response, status, query)
        self.routes.append(route)
        response_adapter = TypeAdapter(response) if response is not None else None

        async def wrapper(request: web.Request) -> web.StreamResponse:
            kwargs: dict[str, Any] = {}
            if roles is not None:
                kwargs["identity"] = require(request, *roles)
            if query is not None:
                try:
                    kwargs["query"] = query.model_validate(dict(request.query))
                except ValidationError as exc:
                    raise ApiError(422, "invalid query parameters", _fields(exc)) from None
            if body is not None:
                kwargs["body"] = await parse_body(request, body)
            result = await handler(request, **kwargs)
            if isinstance(result, web.StreamResponse):
                return result
            if response_adapter is not None:
                payload = response_adapter.dump_python(result, mode="json")
            elif isinstance(result, BaseModel):
                payload = result.model_dump(mode="json")
            else:
                payload = result
            return web.json_response(payload, status=status, dumps=_dumps)

        router.add_route(route.method, path, wrapper)

    def add_raw(
        self,
        router: web.UrlDispatcher,
        method: str,
        path: str,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        *,
        summary: str,
        tag: str,
        content_type: str,
    ) -> None:
        """Mount a route whose body is not JSON (a webhook form, an upload) and document it.

        The handler authenticates and validates by itself; the description says
        what media type it takes so the OpenAPI file still lists every route.
        """
        self.routes.append(Route(method.upper(), path, summary, tag, None, None, None, 200, None))
        self.raw_content_types[(method.upper(), path)] = content_type
        router.add_route(method.upper(), path, handler)

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        components: dict[str, Any] = {}

        def schema_of(kind: Any) -> dict[str, Any]:
            generated = TypeAdapter(kind).json_schema(ref_template="#/components/schemas/{model}")
            components.update(generated.pop("$defs", {}))
            title = generated.get("title")
            if isinstance(kind, type) and issubclass(kind, BaseModel) and title:
                components[title] = generated
                return {"$ref": f"#/components/schemas/{title}"}
            return generated

        for route in self.routes:
            operation: dict[str, Any] = {"summary": route.summary, "tags": [route.tag]}
            parameters = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(route.path)
            ]
            if route.query is not None:
                for name, info in route.query.model_fields.items():
                    parameters.append(
                        {"name": name, "in": "query", "required": info.is_required(), "schema": {}}
                    )
            if parameters:
                operation["parameters"] = parameters
            raw_type = self.raw_content_types.get((route.method, route.path))
            if raw_type is not None:
                operation["requestBody"] = {"content": {raw_type: {"schema": {}}}}
            if route.body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schema_of(route.body)}},
                }
            ok: dict[str, Any] = {"description": "success"}
            if route.response is not None:
                ok["content"] = {"application/json": {"schema": schema_of(route.response)}}
            responses: dict[str, Any] = {str(route.status): ok}
            if route.body is not None or route.query is not None:
                responses["422"] = {"description": "invalid input; the failing fields are named"}
            if route.roles is not None:
                responses["401"] = {"description": "authentication required"}
                operation["security"] = [{"session": []}, {"bearer": []}]
                if route.roles:
                    responses["403"] = {"description": "role not allowed"}
                    operation["x-roles"] = [role.value for role in route.roles]
            operation["responses"] = responses
            paths.setdefault(route.path, {})[route.method.lower()] = operation
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {
                    "session": {"type": "apiKey", "in": "cookie", "name": "unicomm_session"},
                    "bearer": {"type": "http", "scheme": "bearer"},
                },
            },
        }


async def parse_body(request: web.Request, model: type[M]) -> M:
    # Requiring the JSON media type also stops cross-site form posts (no CORS preflight).
    if request.content_type != "application/json":
        raise ApiError(415, "body must be application/json")
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise ApiError(413, f"body larger than {MAX_JSON_BODY} bytes")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise ApiError(413, f"body larger than {MAX_JSON_BODY} bytes")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid request body", _fields(exc)) from None


def _fields(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in error["loc"]) or "(body)", "message": error["msg"]}
        for error in exc.errors()
    ]


def _path_params(path: str) -> list[str]:
    names = []
    for segment in path.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            names.append(segment[1:-1].split(":")[0])
    return names


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
