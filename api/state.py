"""What request handlers may reach: typed application keys."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from api.openapi import RouteTable
from kubebyon.db.database import Database
from kubebyon.health import HealthMonitor
from kubebyon.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    health: HealthMonitor
    tables: list[RouteTable]


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
