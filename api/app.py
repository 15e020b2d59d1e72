"""The aiohttp application: middlewares, route tables, and nothing that talks to
Kubernetes or other outside systems inside a request (DESIGN.md)."""

from __future__ import annotations

from aiohttp import web

from api.middlewares import add_security_headers, observe
from api.openapi import RouteTable
from api.routes import health
from api.state import SERVICES, Services
from kubebyon.db.database import Database
from kubebyon.health import HealthMonitor
from kubebyon.settings import Settings

MAX_BODY_BYTES = 1024 * 1024

ROUTE_TABLES: list[RouteTable] = [health.routes]


def create_app(settings: Settings, db: Database, health_monitor: HealthMonitor) -> web.Application:
    app = web.Application(middlewares=[observe], client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = Services(settings, db, health_monitor, ROUTE_TABLES)
    for table in ROUTE_TABLES:
        for spec in table.routes:
            app.router.add_route(spec.method, spec.path, spec.handler, name=None)
    app.on_response_prepare.append(add_security_headers)
    return app
