"""A local hCaptcha siteverify endpoint (aiohttp), reached through the real adapter.

It checks the form fields hCaptcha's API documents (``secret``, ``response``,
``remoteip``) and answers ``{"success": ..., "error-codes": [...]}``.

    async with FakeHCaptcha(secret="0x-test", accept={"good-token"}) as fake:
        settings = Settings(hcaptcha_verify_url=fake.verify_url)
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


class FakeHCaptcha:
    def __init__(self, *, secret: str, accept: set[str] | None = None) -> None:
        self.secret = secret
        self.accept = set(accept or ())
        self.requests: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_post("/siteverify", self._siteverify)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def verify_url(self) -> str:
        return str(self._server.make_url("/siteverify"))

    async def _siteverify(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(form)
        errors: list[str] = []
        if form.get("secret") != self.secret:
            errors.append("invalid-input-secret")
        if not form.get("response"):
            errors.append("missing-input-response")
        elif form["response"] not in self.accept:
            errors.append("invalid-input-response")
        body: dict[str, Any] = {"success": not errors}
        if errors:
            body["error-codes"] = errors
        return web.json_response(body)

    async def __aenter__(self) -> FakeHCaptcha:
        await self._server.start_server()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.close()
