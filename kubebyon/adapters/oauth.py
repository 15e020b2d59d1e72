"""OAuth2/OIDC identity providers: OIDC discovery, the authorization-code exchange with
PKCE, ID-token verification against the provider's JWKS, and GitHub's user API.

Satisfies ``api.state.OAuthClient``. ID tokens are checked by joserfc (signature, with
the algorithms the provider advertises) and authlib's ``CodeIDToken`` rules (iss, aud,
azp, exp, iat, nonce, at_hash), never by hand. Every URL comes from the provider's
configuration (issuer, or GitHub's authorize/token/API URLs), so tests point them at
a local fake. Errors name what failed, never a code, token or subject.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import ClaimError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from yarl import URL

from kubebyon.domain.oauth import (
    ExternalIdentity,
    IdentityRejected,
    ProviderUnavailable,
    group_claims,
    is_true,
)
from kubebyon.domain.system_settings import OAuthProviderConfig

log = structlog.get_logger("kubebyon.adapters.oauth")

GOOGLE_ISSUER = "https://accounts.google.com"
GITHUB_AUTHORIZE_URL = "https://github.com/login/oauth/authorize"
GITHUB_TOKEN_URL = "https://github.com/login/oauth/access_token"  # noqa: S105 - a URL
GITHUB_API_BASE_URL = "https://api.github.com"
OIDC_SCOPES = ("openid", "email", "profile")
GITHUB_SCOPES = ("read:user", "user:email")
TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
METADATA_TTL = 3600.0  # discovery documents and key sets; keys are refetched on an unknown kid
CLOCK_SKEW = 120  # seconds of leeway on exp/iat, as authlib's own clients use
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_JSON = {"Accept": "application/json"}


def issuer_of(provider: OAuthProviderConfig) -> str:
    issuer = provider.issuer or (GOOGLE_ISSUER if provider.kind == "google" else None)
    if not issuer:
        raise ProviderUnavailable(f"provider {provider.name} has no issuer configured")
    return issuer.rstrip("/")


def scopes_of(provider: OAuthProviderConfig) -> list[str]:
    if provider.kind == "github":
        return provider.scopes or list(GITHUB_SCOPES)
    scopes = provider.scopes or list(OIDC_SCOPES)
    return scopes if "openid" in scopes else ["openid", *scopes]


def _error_code(body: Any) -> str:
    """The provider's ``error`` field, if it looks like an error code (it is echoed)."""
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else "unknown_error"


class OAuthAdapter:
    def __init__(
        self, *, metadata_ttl: float = METADATA_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.metadata_ttl = metadata_ttl
        self.clock = clock
        self._discovery: dict[str, tuple[float, dict[str, Any]]] = {}
        self._key_sets: dict[str, tuple[float, KeySet]] = {}

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def authorization_url(
        self,
        provider: OAuthProviderConfig,
        *,
        state: str,
        nonce: str,
        code_verifier: str,
        redirect_uri: str,
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes_of(provider)),
            "state": state,
            "code_challenge": create_s256_code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if provider.kind == "github":
            endpoint = provider.authorize_url or GITHUB_AUTHORIZE_URL
        else:
            endpoint = (await self._metadata(provider))["authorization_endpoint"]
            params["nonce"] = nonce
        return str(URL(endpoint).extend_query(params))

    async def identify(
        self,
        provider: OAuthProviderConfig,
        *,
        client_secret: str,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        nonce: str,
    ) -> ExternalIdentity:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        if provider.kind == "github":
            return await self._github(provider, client_secret, form)
        return await self._oidc(provider, client_secret, form, nonce)

    # --- OpenID Connect -----------------------------------------------------------

    async def _oidc(
        self, provider: OAuthProviderConfig, client_secret: str, form: dict[str, str], nonce: str
    ) -> ExternalIdentity:
        metadata = await self._metadata(provider)
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        headers = dict(_JSON)
        if "client_secret_basic" in methods:
            # RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding.
            headers["Authorization"] = aiohttp.encode_basic_auth(
                quote(provider.client_id, safe=""), quote(client_secret, safe="")
            )
        else:
            form = {**form, "client_id": provider.client_id, "client_secret": client_secret}
        status, body = await self._call(
            "POST", metadata["token_endpoint"], data=form, headers=headers
        )
        if status >= 500:
            raise ProviderUnavailable(f"{provider.name} token endpoint answered {status}")
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            raise IdentityRejected(f"{provider.name} refused the code ({_error_code(body)})")
        claims = await self._verify_id_token(
            provider, metadata, body["id_token"], nonce, body.get("access_token")
        )
        email = claims.get("email")
        name = claims.get("name") or claims.get("preferred_username") or ""
        return ExternalIdentity(
            subject=claims["sub"],
            email=email if isinstance(email, str) and email else None,
            email_verified=is_true(claims.get("email_verified")),
            name=name if isinstance(name, str) else "",
            groups=group_claims(claims),
        )

    async def _verify_id_token(
        self,
        provider: OAuthProviderConfig,
        metadata: dict[str, Any],
        id_token: str,
        nonce: str,
        access_token: Any,
    ) -> dict[str, Any]:
        advertised = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        # Only asymmetric algorithms verify against the JWKS; "none" and HS* never do.
        algorithms = [a for a in advertised if isinstance(a, str) and a[:2] in ("RS", "PS", "ES")]
        registry = JWSRegistry(algorithms=algorithms or ["RS256"], strict_check_header=False)
        jwks_uri = metadata["jwks_uri"]
        try:
            try:
                token = jwt.decode(id_token, await self._keys(jwks_uri), registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys since we cached them
                token = jwt.decode(
                    id_token, await self._keys(jwks_uri, fresh=True), registry=registry
                )
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": metadata["issuer"]},
                    "aud": {"essential": True, "value": provider.client_id},
                },
                {
                    "nonce": nonce,
                    "client_id": provider.client_id,
                    "access_token": access_token if isinstance(access_token, str) else None,
                },
            )
            claims.validate(leeway=CLOCK_SKEW)
        except JoseError as exc:
            detail = exc.error + (f": {exc.claim}" if isinstance(exc, ClaimError) else "")
            raise IdentityRejected(
                f"the ID token from {provider.name} failed verification ({detail})"
            ) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise IdentityRejected(f"the ID token from {provider.name} has no subject")
        return dict(claims)

    async def _metadata(self, provider: OAuthProviderConfig) -> dict[str, Any]:
        issuer = issuer_of(provider)
        cached = self._discovery.get(issuer)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        status, body = await self._call("GET", f"{issuer}/.well-known/openid-configuration")
        if status != 200 or not isinstance(body, dict):
            raise ProviderUnavailable(f"{provider.name} discovery document answered {status}")
        # OIDC Discovery §4.3: the document must name the issuer it was fetched from.
        if str(body.get("issuer", "")).rstrip("/") != issuer:
            raise ProviderUnavailable(f"{provider.name} discovery document names another issuer")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(body.get(field), str):
                raise ProviderUnavailable(f"{provider.name} discovery document lacks {field}")
        self._discovery[issuer] = (self.clock() + self.metadata_ttl, body)
        return body

    async def _keys(self, jwks_uri: str, *, fresh: bool = False) -> KeySet:
        cached = self._key_sets.get(jwks_uri)
        if cached is not None and cached[0] > self.clock() and not fresh:
            return cached[1]
        status, body = await self._call("GET", jwks_uri)
        try:
            if status != 200 or not isinstance(body, dict):
                raise ValueError(f"answered {status}")
            keys = KeySet.import_key_set(body)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise ProviderUnavailable(f"key set unusable: {type(exc).__name__}") from None
        self._key_sets[jwks_uri] = (self.clock() + self.metadata_ttl, keys)
        return keys

    # --- GitHub (OAuth2, no OIDC) -------------------------------------------------

    async def _github(
        self, provider: OAuthProviderConfig, client_secret: str, form: dict[str, str]
    ) -> ExternalIdentity:
        form = {**form, "client_id": provider.client_id, "client_secret": client_secret}
        status, body = await self._call(
            "POST", provider.token_url or GITHUB_TOKEN_URL, data=form, headers=_JSON
        )
        if status >= 500:
            raise ProviderUnavailable(f"{provider.name} token endpoint answered {status}")
        # GitHub reports a bad code as 200 with an "error" field.
        token = body.get("access_token") if isinstance(body, dict) else None
        if status != 200 or not isinstance(token, str):
            raise IdentityRejected(f"{provider.name} refused the code ({_error_code(body)})")
        api = (provider.api_base_url or GITHUB_API_BASE_URL).rstrip("/")
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        user = await self._github_get(provider, f"{api}/user", headers)
        emails = await self._github_get(provider, f"{api}/user/emails", headers)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise IdentityRejected(f"{provider.name} returned no user id")
        listed = emails if isinstance(emails, list) else []
        primary = next((e for e in listed if isinstance(e, dict) and e.get("primary") is True), {})
        email = primary.get("email")
        name = user.get("name") or user.get("login") or ""
        return ExternalIdentity(
            subject=str(user["id"]),
            email=email if isinstance(email, str) and email else None,
            email_verified=primary.get("verified") is True,
            name=name if isinstance(name, str) else "",
        )

    async def _github_get(
        self, provider: OAuthProviderConfig, url: str, headers: dict[str, str]
    ) -> Any:
        status, body = await self._call("GET", url, headers=headers)
        if status >= 500:
            raise ProviderUnavailable(f"{provider.name} API answered {status}")
        if status != 200:
            raise IdentityRejected(f"{provider.name} API refused the access token ({status})")
        return body

    # --- HTTP -----------------------------------------------------------------------

    async def _call(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON body or None). Retries connection failures only; a POST only when
        the connection was never made, since a code must not be sent twice."""
        retry_on = (
            aiohttp.ClientConnectionError if method == "GET" else aiohttp.ClientConnectorError
        )
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(retry_on),
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        )
        try:
            return await retrying(self._once, method, url, **kwargs)
        except (aiohttp.ClientError, TimeoutError) as exc:
            host = URL(url).host
            log.warning("identity provider unreachable", host=host, error=type(exc).__name__)
            raise ProviderUnavailable(f"{host} is unreachable ({type(exc).__name__})") from None

    async def _once(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        async with self._client().request(method, url, **kwargs) as response:
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:  # not JSON: callers judge by the status
                return response.status, None
