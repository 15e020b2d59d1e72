"""A local identity provider that speaks OpenID Connect and GitHub's OAuth dialect.

An ``aiohttp.web`` server on 127.0.0.1 (random port) for driving the real OAuth adapter:

- OIDC: ``/.well-known/openid-configuration``, ``/authorize``, ``/token``, ``/jwks``; ID
  tokens are RS256-signed JWTs with iss, sub, aud, exp, iat, nonce, email,
  email_verified, name and a ``groups`` claim.
- GitHub: ``/login/oauth/authorize``, ``/login/oauth/access_token``, ``/user``,
  ``/user/emails`` (the server root doubles as the API base URL).

The authorize endpoints stand in for the user signing in and consenting: they redirect
straight back with a code and the state (or ``error=access_denied`` when ``deny`` is
set). The token endpoints check what real providers check: the client credentials,
the code (single use, issued to this client), the redirect_uri and the PKCE verifier.
``misbehave`` makes the ID tokens wrong in one way, to prove the client refuses them:
``bad_signature``, ``wrong_nonce``, ``wrong_audience``, ``wrong_issuer``, ``expired``.

Usage::

    async with FakeIdentityProvider() as idp:
        idp.account = FakeAccount("sub-1", "ada@example.com", groups=["ops"])
        ...  # point an OAuth provider config at idp.issuer / idp.url(...)
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import RSAKey
from yarl import URL

KID = "fake-key-1"
MISBEHAVIOURS = frozenset(
    {"bad_signature", "wrong_nonce", "wrong_audience", "wrong_issuer", "expired"}
)


@functools.cache
def _signing_key(which: str) -> RSAKey:
    """Generated once per test session: 'good' is published in the JWKS, 'rogue' is not
    (but claims the same kid, so only the signature check can catch it)."""
    return RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"})


@dataclass
class FakeAccount:
    subject: str  # GitHub: the numeric user id, as a string
    email: str | None
    email_verified: bool = True
    name: str = "Ada Lovelace"
    groups: list[str] = field(default_factory=list)
    login: str = "ada"  # GitHub only


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    account: FakeAccount


class FakeIdentityProvider:
    def __init__(self, *, client_id: str = "kubebyon-test", client_secret: str | None = None):
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.account = FakeAccount("subject-" + secrets.token_hex(8), "ada@example.com")
        self.deny = False
        self.misbehave: str | None = None
        self.issued: list[str] = []  # every code, access token and ID token handed out
        self.verifiers: list[str] = []  # PKCE verifiers received at the token endpoints
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, FakeAccount] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> FakeIdentityProvider:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/login/oauth/authorize", self._authorize)
        app.router.add_post("/login/oauth/access_token", self._github_token)
        app.router.add_get("/user", self._github_user)
        app.router.add_get("/user/emails", self._github_emails)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.issuer + path

    # --- OIDC ---------------------------------------------------------------------

    async def _discovery(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.url("/authorize"),
                "token_endpoint": self.url("/token"),
                "jwks_uri": self.url("/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def _jwks(self, _request: web.Request) -> web.Response:
        return web.json_response({"keys": [_signing_key("good").as_dict(private=False)]})

    async def _authorize(self, request: web.Request) -> web.Response:
        """The user signs in and consents at once; bad requests get an error page, as a
        real provider shows (it must not redirect to an unverified redirect_uri)."""
        q = request.query
        oidc = request.path == "/authorize"
        problems = [
            q.get("client_id") != self.client_id and "unknown client_id",
            q.get("response_type") != "code" and "response_type must be code",
            not q.get("redirect_uri") and "redirect_uri missing",
            not q.get("state") and "state missing",
            q.get("code_challenge_method") != "S256" and "PKCE S256 required",
            not q.get("code_challenge") and "code_challenge missing",
            oidc and "openid" not in q.get("scope", "").split() and "scope must include openid",
            oidc and not q.get("nonce") and "nonce missing",
        ]
        if any(problems):
            return web.Response(status=400, text="; ".join(p for p in problems if p))
        back = URL(q["redirect_uri"])
        if self.deny:
            raise web.HTTPFound(back.extend_query(error="access_denied", state=q["state"]))
        code = secrets.token_urlsafe(24)
        self.issued.append(code)
        self._grants[code] = _Grant(
            self.client_id, q["redirect_uri"], q["code_challenge"], q.get("nonce"), self.account
        )
        raise web.HTTPFound(back.extend_query(code=code, state=q["state"]))

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret = _client_credentials(request, form)
        if client_id != self.client_id or client_secret != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self._redeem(form)
        if grant is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        access_token = self._new_access_token(grant.account)
        id_token = self._id_token(grant)
        self.issued.append(id_token)
        return web.json_response(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": id_token,
            },
            headers={"Cache-Control": "no-store"},
        )

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        account = grant.account
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": account.subject,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "name": account.name,
            "email_verified": account.email_verified,
            "groups": account.groups,
        }
        if account.email is not None:
            claims["email"] = account.email
        key = _signing_key("good")
        match self.misbehave:
            case "bad_signature":
                key = _signing_key("rogue")
            case "wrong_nonce":
                claims["nonce"] = secrets.token_urlsafe(16)
            case "wrong_audience":
                claims["aud"] = "some-other-client"
            case "wrong_issuer":
                claims["iss"] = "https://issuer.invalid"
            case "expired":
                claims["iat"], claims["exp"] = now - 3600, now - 1800
        return jwt.encode({"alg": "RS256", "kid": KID}, claims, key)

    # --- GitHub -------------------------------------------------------------------

    async def _github_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return web.json_response({"error": "incorrect_client_credentials"})
        grant = self._redeem(form)
        if grant is None:  # GitHub answers 200 with an error field
            return web.json_response({"error": "bad_verification_code"})
        token = self._new_access_token(grant.account)
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "scope": "user:email"}
        )

    def _github_account(self, request: web.Request) -> FakeAccount:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        account = self._access.get(token) if scheme.lower() in ("bearer", "token") else None
        if account is None:
            raise web.HTTPUnauthorized(
                text='{"message": "Bad credentials"}', content_type="application/json"
            )
        return account

    async def _github_user(self, request: web.Request) -> web.Response:
        account = self._github_account(request)
        return web.json_response(
            {
                "id": int(account.subject),
                "login": account.login,
                "name": account.name,
                "email": None,
            }
        )

    async def _github_emails(self, request: web.Request) -> web.Response:
        account = self._github_account(request)
        emails = [
            {
                "email": f"{account.login}@users.noreply.github.com",
                "primary": False,
                "verified": True,
                "visibility": None,
            }
        ]
        if account.email is not None:
            emails.insert(
                0,
                {
                    "email": account.email,
                    "primary": True,
                    "verified": account.email_verified,
                    "visibility": "private",
                },
            )
        return web.json_response(emails)

    # --- shared -------------------------------------------------------------------

    def _redeem(self, form: Any) -> _Grant | None:
        """The code is spent on first use, right or wrong (as real providers do)."""
        grant = self._grants.pop(str(form.get("code", "")), None)
        verifier = str(form.get("code_verifier", ""))
        self.verifiers.append(verifier)
        if grant is None or grant.client_id != self.client_id:
            return None
        if form.get("redirect_uri") != grant.redirect_uri:
            return None
        if not verifier or create_s256_code_challenge(verifier) != grant.code_challenge:
            return None
        return grant

    def _new_access_token(self, account: FakeAccount) -> str:
        token = secrets.token_urlsafe(24)
        self.issued.append(token)
        self._access[token] = account
        return token


def _client_credentials(request: web.Request, form: Any) -> tuple[str, str]:
    """client_secret_basic (form-encoded parts, RFC 6749 §2.3.1) or client_secret_post."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return unquote_plus(user), unquote_plus(password)
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))
