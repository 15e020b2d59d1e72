"""hCaptcha's siteverify endpoint (https://docs.hcaptcha.com/#verify-the-user-response-server-side).

Satisfies ``api.state.CaptchaVerifier``. An unreachable or confused verifier counts as a
failed captcha: the user can retry, and nobody gets past a captcha that was not checked.
"""

from __future__ import annotations

import aiohttp
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

log = structlog.get_logger("kubebyon.adapters.hcaptcha")
TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)


class HCaptchaVerifier:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def verify(
        self, *, verify_url: str, secret: str, token: str, remote_ip: str | None
    ) -> bool:
        form = {"secret": secret, "response": token}
        if remote_ip:
            form["remoteip"] = remote_ip
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(aiohttp.ClientConnectionError),
                stop=stop_after_attempt(2),
                wait=wait_fixed(0.2),
                reraise=True,
            ):
                with attempt:
                    async with self._client().post(verify_url, data=form) as response:
                        response.raise_for_status()
                        answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("hCaptcha verification unavailable", error=type(exc).__name__)
            return False
        if not isinstance(answer, dict):
            return False
        return answer.get("success") is True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
