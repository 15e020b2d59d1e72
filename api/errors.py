"""Error envelopes: one per dialect, chosen by path prefix.

Console/auth: ``{"error": {"code", "message"}}``; bk-bcs: ``{result, code, message, data}``;
Kite: ``{"error": "..."}``. Bad input never becomes a 500 or a traceback.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kubebyon.domain.bcs import error_envelope as bcs_error

BCS_PREFIX = "/bcsapi/"
KITE_PREFIX = "/api/v1/admin/roles"

# Seed-style machine codes for generic HTTP statuses.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_response(path: str, error: ApiError) -> web.Response:
    body: dict[str, Any]
    if path.startswith(BCS_PREFIX):
        code, message = bcs_error(error.status, error.message)
        body = {"result": False, "code": code, "message": message, "data": None}
    elif path.startswith(KITE_PREFIX):
        body = {"error": error.message}
    else:
        inner: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.details is not None:
            inner["details"] = error.details
        body = {"error": inner}
    response = web.json_response(body, status=error.status)
    response.headers.update(error.headers)
    return response
