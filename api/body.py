"""Reading request bodies into pydantic models, with errors a client can act on."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """Field paths and messages; never the submitted values (they may be secrets)."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]


async def read_json(request: web.Request, model: type[M]) -> M:
    if not request.can_read_body:
        raise ApiError(400, "request body is required", "invalid_request")
    try:
        raw = await request.read()
        data = json.loads(raw)
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "request body is too large", "payload_too_large") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "request body is not valid JSON", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_request")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        first = details[0]
        raise ApiError(
            400, f"{first['field']}: {first['message']}", "validation_error", details=details
        ) from None
