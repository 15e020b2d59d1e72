"""The aiohttp application: middlewares, route tables, and nothing that talks to
Kubernetes or other outside systems inside a request (DESIGN.md)."""

from __future__ import annotations

from aiohttp import web

from api.auth import authenticate
from api.browser import browser_security
from api.compat import bcs, kite
from api.middlewares import add_security_headers, observe
from api.openapi import RouteTable
from api.routes import (
    activities,
    admin_users,
    admission,
    api_keys,
    auth,
    clusters,
    health,
    join,
    kubectl,
    node_actions,
    nodes,
    overview,
    profile,
    registration,
    sso,
    system_settings,
    tokens,
)
from api.state import SERVICES, CaptchaVerifier, KubectlRunner, OAuthClient, Services
from kubebyon.db.authz import Authorizer
from kubebyon.db.database import Database
from kubebyon.db.system_settings import SystemSettingsStore
from kubebyon.domain.ratelimit import SlidingWindowLimiter
from kubebyon.health import HealthMonitor
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings

MAX_BODY_BYTES = 1024 * 1024

ROUTE_TABLES: list[RouteTable] = [
    health.routes,
    auth.routes,
    registration.routes,
    sso.routes,
    profile.routes,
    api_keys.routes,
    activities.routes,
    admin_users.routes,
    system_settings.routes,
    clusters.routes,
    kubectl.routes,
    tokens.routes,
    join.routes,
    nodes.routes,
    node_actions.routes,
    overview.routes,
    admission.routes,
    kite.routes,
    bcs.routes,
]


def build_services(
    settings: Settings,
    db: Database,
    health_monitor: HealthMonitor,
    secrets: SecretBox,
    *,
    captcha: CaptchaVerifier | None = None,
    oauth: OAuthClient | None = None,
    kubectl: KubectlRunner | None = None,
) -> Services:
    return Services(
        settings=settings,
        db=db,
        health=health_monitor,
        tables=ROUTE_TABLES,
        secrets=secrets,
        system_settings=SystemSettingsStore(db),
        join_limiter=SlidingWindowLimiter(
            window=settings.join_rate_limit_window_seconds,
            burst=settings.join_rate_limit_burst,
            max_entries=settings.join_rate_limit_max_entries,
        ),
        auth_limiter=SlidingWindowLimiter(
            window=settings.auth_rate_limit_window_seconds,
            burst=settings.auth_rate_limit_burst,
            max_entries=settings.auth_rate_limit_max_entries,
        ),
        authorizer=Authorizer(db),
        captcha=captcha,
        oauth=oauth,
        kubectl=kubectl,
    )


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[observe, browser_security, authenticate], client_max_size=MAX_BODY_BYTES
    )
    app[SERVICES] = services
    for table in services.tables:
        for spec in table.routes:
            route = app.router.add_route(spec.method, spec.path, spec.handler)
            services.policies[route] = spec.auth
    app.on_response_prepare.append(add_security_headers)
    return app
