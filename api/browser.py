"""CORS and the CSRF origin check for cookie-authenticated writes (seed rules)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import ApiError
from api.state import services
from kubebyon.domain.origins import cors_headers, csrf_problem, trusted_cookie_origins
from kubebyon.domain.tokens import SESSION_COOKIE

PREFLIGHT_MAX_AGE = "600"


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@web.middleware
async def browser_security(request: web.Request, handler: Handler) -> web.StreamResponse:
    svc = services(request)
    origin = request.headers.get("Origin")
    cors = cors_headers(origin, svc.settings.cors_allowed_origins)
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        preflight = web.Response(status=204 if cors else 403)
        if cors:
            preflight.headers.update(cors)
            preflight.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
            preflight.headers["Access-Control-Allow-Headers"] = (
                "Authorization, Content-Type, X-Request-ID"
            )
            preflight.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return preflight
    # Only requests a browser sends with our cookie can be forged by another site;
    # requests authenticated by Authorization headers skip the check (seed).
    if SESSION_COOKIE in request.cookies and "Authorization" not in request.headers:
        system = await svc.system_settings.get()
        trusted = trusted_cookie_origins(
            own_origin(request), system.public_base_url, svc.settings.cors_allowed_origins
        )
        problem = csrf_problem(
            method=request.method,
            origin=origin,
            referer=request.headers.get("Referer"),
            sec_fetch_site=request.headers.get("Sec-Fetch-Site"),
            trusted=trusted,
        )
        if problem:
            raise ApiError(403, f"CSRF check failed: {problem}", "csrf_failed", headers=cors)
    try:
        response = await handler(request)
    except ApiError as exc:
        exc.headers.update(cors)
        raise
    response.headers.update(cors)
    return response
