"""(being written)"""

from __future__ import annotations

from api.openapi import RouteTable

routes = RouteTable("admission")
