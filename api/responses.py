"""Building JSON responses from the pydantic models that document them."""

from __future__ import annotations

from aiohttp import web
from asyncpg import Record
from pydantic import BaseModel

from api.models.auth import UserResponse, user_out


def json_model(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def user_response(row: Record) -> web.Response:
    return json_model(UserResponse(user=user_out(row)))
