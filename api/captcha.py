"""hCaptcha enforcement for login and registration, when an admin enabled it."""

from __future__ import annotations

from aiohttp import web

from api.auth import remote_ip
from api.errors import ApiError
from api.state import services


async def require_captcha(request: web.Request, token: str | None) -> None:
    svc = services(request)
    config = (await svc.system_settings.get()).hcaptcha
    if not config.enabled:
        return
    if not token:
        raise ApiError(400, "captcha_token is required", "captcha_required")
    if svc.captcha is None or not config.secret_encrypted:
        raise ApiError(503, "captcha is enabled but not fully configured", "captcha_unavailable")
    ok = await svc.captcha.verify(
        verify_url=svc.settings.hcaptcha_verify_url,
        secret=svc.secrets.decrypt(config.secret_encrypted),
        token=token,
        remote_ip=remote_ip(request),
    )
    if not ok:
        raise ApiError(400, "captcha verification failed", "captcha_failed")
