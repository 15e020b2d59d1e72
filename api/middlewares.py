"""Request middlewares: request id + access log + metrics, error envelopes, headers."""

from __future__ import annotations

import re
import secrets
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import ApiError, error_response
from kubebyon import metrics

log = structlog.get_logger("kubebyon.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
REQUEST_ID_HEADER = "X-Request-ID"
QUIET_ROUTES = frozenset({"/healthz", "/metrics"})

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}


async def add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """Runs for every response, including errors raised before any handler."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def route_template(request: web.Request) -> str:
    """The route pattern, never the raw path: raw paths hold ids and blow up cardinality."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await _envelope(request, handler)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        template = route_template(request)
        metrics.HTTP_REQUESTS.labels(request.method, template, str(status)).inc()
        metrics.HTTP_DURATION.labels(request.method, template).observe(elapsed)
        # The path only: query strings carry join tokens and must never reach a log.
        # Successful probes and scrapes are DEBUG: load balancers and Prometheus would
        # otherwise drown the log (and pay for it on every probe).
        quiet = status < 400 and template in QUIET_ROUTES
        (log.debug if quiet else log.info)(
            "request",
            method=request.method,
            path=request.path,
            route=template,
            status=status,
            ms=round(elapsed * 1000, 2),
            remote=request.remote,
        )
        structlog.contextvars.unbind_contextvars("request_id")


async def _envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request.path, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        elif exc.status == 404:
            message = f"no route for {request.path}"
        elif exc.status == 413:
            message = "request body is too large"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(request.path, ApiError(exc.status, message, headers=headers))
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        return error_response(request.path, ApiError(500, "internal error"))
