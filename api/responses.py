"""Building JSON responses from the pydantic models that document them."""

from __future__ import annotations

from aiohttp import web
from asyncpg import Record
from pydantic import BaseModel

from api.models.auth import UserResponse, user_out


def json_model(model: BaseModel, *, status: int = 200) -> web.Response:
    # pydantic's own serializer: one pass instead of model_dump + json.dumps (a third
    # less CPU on a 1,000-cluster list, docs/performance.md).
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def user_response(row: Record) -> web.Response:
    return json_model(UserResponse(user=user_out(row)))
