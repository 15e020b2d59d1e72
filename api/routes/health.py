"""``GET /healthz`` (seed), ``GET /metrics`` and ``GET /api/openapi.json``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.models.meta import HealthResponse
from api.openapi import RouteTable, build_openapi
from api.state import services
from kubebyon import __version__, metrics

routes = RouteTable("operations")


@routes.route(
    "GET",
    "/healthz",
    summary="Health of this process",
    response=HealthResponse,
    auth="none",
    statuses=(503,),
)
async def healthz(request: web.Request) -> web.Response:
    healthy, checks = services(request).health.report()
    # Built by hand on this hot path; HealthResponse documents the same shape.
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return web.json_response(body, status=200 if healthy else 503)


@routes.route(
    "GET", "/metrics", summary="Prometheus metrics", auth="none", response_content_type="text/plain"
)
async def prometheus_metrics(request: web.Request) -> web.Response:
    await metrics.refresh_database_gauges(services(request).db)
    return web.Response(
        body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@routes.route("GET", "/api/openapi.json", summary="This OpenAPI document", auth="none")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(services(request).tables, __version__))
