"""Route tables that carry their own documentation, and the OpenAPI 3.1 document built
from them. A route is declared once, with its pydantic models; the spec follows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_content_type: str = "application/json"
    auth: str = "session"  # "none", "session", "admin", ...: read by the auth middleware
    statuses: tuple[int, ...] = ()
    query: tuple[tuple[str, str], ...] = ()  # (name, description)
    success_status: int = 200
    multipart_field: str | None = None  # a multipart/form-data upload with this file field


@dataclass
class RouteTable:
    tag: str
    routes: list[RouteSpec] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        request: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        response_content_type: str = "application/json",
        auth: str = "session",
        statuses: Iterable[int] = (),
        query: Iterable[tuple[str, str]] = (),
        success_status: int = 200,
        multipart_field: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(
                RouteSpec(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=summary,
                    tags=(self.tag,),
                    request=request,
                    response=response,
                    response_content_type=response_content_type,
                    auth=auth,
                    statuses=tuple(statuses),
                    query=tuple(query),
                    success_status=success_status,
                    multipart_field=multipart_field,
                )
            )
            return handler

        return register


def _operation(spec: RouteSpec) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": spec.summary,
        "tags": list(spec.tags),
        "operationId": f"{spec.method.lower()}_{spec.handler.__name__}",
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_params(spec.path)
    ]
    params += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": desc,
            "schema": {"type": "string"},
        }
        for name, desc in spec.query
    ]
    if params:
        op["parameters"] = params
    if spec.request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(spec.request)}},
        }
    elif spec.multipart_field is not None:
        field_schema = {"type": "string", "contentMediaType": "application/octet-stream"}
        op["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [spec.multipart_field],
                        "properties": {spec.multipart_field: field_schema},
                    }
                }
            },
        }
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "OK"}
    if spec.response is not None:
        ok["content"] = {spec.response_content_type: {"schema": _ref(spec.response)}}
    elif spec.response_content_type != "application/json":
        ok["content"] = {spec.response_content_type: {"schema": {"type": "string"}}}
    responses[str(spec.success_status)] = ok
    for status in spec.statuses:
        responses[str(status)] = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    op["responses"] = responses
    if spec.auth != "none":
        op["security"] = [{"session": []}, {"apiKey": []}]
    return op


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def build_openapi(tables: Iterable[RouteTable], version: str) -> dict[str, Any]:
    specs = [spec for table in tables for spec in table.routes]
    models = {m for s in specs for m in (s.request, s.response) if m is not None}
    _, schema = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    components = dict(schema.get("$defs", {}))
    components["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "KubeBYON API", "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "kubebyon_session"},
                "apiKey": {"type": "http", "scheme": "bearer"},
            },
        },
    }
