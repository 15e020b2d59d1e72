"""Admin system settings (seed: Admin System Settings), with write-only secrets.

A PUT is applied whole or not at all: the stored document is locked, the request is
merged into it, the result is checked, then written and audited in one transaction.
The audit message names the sections and secrets that changed, never a value.
"""

from __future__ import annotations

from typing import Any, NoReturn

from aiohttp import web

from api.auth import actor, require
from api.body import read_json
from api.errors import ApiError
from api.models.system_settings import (
    SystemSettingsOut,
    SystemSettingsUpdate,
    settings_out,
)
from api.openapi import RouteTable
from api.responses import json_model
from api.state import services
from kubebyon.db import audit
from kubebyon.domain.system_settings import OAuthProviderConfig, SystemSettings
from kubebyon.secretbox import SecretBox

routes = RouteTable("system_settings")
PATH = "/api/console/admin/system-settings"


@routes.route(
    "GET",
    PATH,
    summary="Read the system settings (secrets are shown only as *_configured)",
    response=SystemSettingsOut,
    auth="admin",
    statuses=(401, 403),
)
async def get_system_settings(request: web.Request) -> web.Response:
    db = services(request).db
    row = await db.fetchrow(db.q.get_system_settings)
    assert row is not None  # the migration inserts the single row
    return _json(SystemSettings.model_validate(row["document"]), row)


@routes.route(
    "PUT",
    PATH,
    summary="Update the system settings (write-only secrets: x + x_changed)",
    request=SystemSettingsUpdate,
    response=SystemSettingsOut,
    auth="admin",
    statuses=(400, 401, 403),
)
async def put_system_settings(request: web.Request) -> web.Response:
    svc = services(request)
    principal = require(request)
    body = await read_json(request, SystemSettingsUpdate)
    db = svc.db
    async with db.transaction() as conn:
        row = await conn.fetchrow(db.q.lock_system_settings)
        assert row is not None
        stored = SystemSettings.model_validate(row["document"])
        merged, secrets_changed = _merge(stored, body, svc.secrets)
        _check(merged)
        await svc.system_settings.put(conn, merged, principal.user_id)
        await audit.record(
            conn,
            actor(request),
            resource_type="system_settings",
            action="update",
            message=_audit_message(stored, merged, secrets_changed),
        )
    svc.system_settings.invalidate()  # after commit: no read can cache the old document
    row = await db.fetchrow(db.q.get_system_settings)
    assert row is not None
    return _json(SystemSettings.model_validate(row["document"]), row)


def _json(settings: SystemSettings, row: Any) -> web.Response:
    return json_model(settings_out(settings, row["updated_at"]))


# Sections with one write-only field each: ``x`` + ``x_changed`` in, ``x_encrypted`` stored.
SECRET_OF_SECTION = {"hcaptcha": "secret", "smtp": "password"}


def _write_only(secret: str) -> set[str]:
    return {secret, f"{secret}_changed", f"{secret}_configured"}


def _secret(stored: Any, sent: Any, secret: str, box: SecretBox) -> str | None:
    """The seed's write-only rule: without ``x_changed`` the stored secret stays, and
    ``x_changed`` with an empty ``x`` clears it."""
    current: str | None = getattr(stored, f"{secret}_encrypted") if stored else None
    if not getattr(sent, f"{secret}_changed"):
        return current
    value = getattr(sent, secret)
    return box.encrypt(value) if value else None


def _merge(
    stored: SystemSettings, body: SystemSettingsUpdate, box: SecretBox
) -> tuple[SystemSettings, list[str]]:
    """The document after the update, and the names of the secrets it set or cleared."""
    sent = body.model_fields_set
    update: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("public_base_url", "join_base_url", "managed_workload_ingress_base_domain")
        if name in sent
    }
    changed: list[str] = []
    if body.oauth_providers is not None:
        previous = {p.name: p for p in stored.oauth_providers}
        providers = [
            OAuthProviderConfig(
                **item.model_dump(exclude=_write_only("client_secret")),
                client_secret_encrypted=_secret(
                    previous.get(item.name), item, "client_secret", box
                ),
            )
            for item in body.oauth_providers
        ]
        changed += [
            _change(f"oauth_providers[{new.name}].client_secret", new.client_secret_encrypted)
            for item, new in zip(body.oauth_providers, providers, strict=True)
            if item.client_secret_changed
        ]
        update["oauth_providers"] = providers
    for section, secret in SECRET_OF_SECTION.items():
        item = getattr(body, section)
        if item is None:
            continue
        current = getattr(stored, section)
        fields = item.model_dump(include=item.model_fields_set - _write_only(secret))
        encrypted = fields[f"{secret}_encrypted"] = _secret(current, item, secret, box)
        if getattr(item, f"{secret}_changed"):
            changed.append(_change(f"{section}.{secret}", encrypted))
        update[section] = current.model_copy(update=fields)
    return stored.model_copy(update=update), changed


def _change(name: str, encrypted: str | None) -> str:
    return f"{name} ({'set' if encrypted else 'cleared'})"


def _check(settings: SystemSettings) -> None:
    """Rules that depend on the merged document (a secret may already be stored)."""
    for index, provider in enumerate(settings.oauth_providers):
        where = f"oauth_providers.{index}"
        if provider.enabled and not provider.client_id:
            _invalid(f"{where}.client_id", f"enabled provider {provider.name!r} needs a client_id")
        if provider.kind == "oidc" and not provider.issuer:
            _invalid(f"{where}.issuer", f"OIDC provider {provider.name!r} needs an issuer URL")
    hcaptcha = settings.hcaptcha
    if hcaptcha.enabled and not hcaptcha.site_key:
        _invalid("hcaptcha.site_key", "a site_key is required when hCaptcha is enabled")
    if hcaptcha.enabled and not hcaptcha.secret_encrypted:
        _invalid("hcaptcha.secret", "a secret is required when hCaptcha is enabled")


def _invalid(field: str, message: str) -> NoReturn:
    raise ApiError(
        400,
        f"{field}: {message}",
        "validation_error",
        details=[{"field": field, "message": message}],
    )


def _audit_message(before: SystemSettings, after: SystemSettings, secrets: list[str]) -> str:
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    sections = [name for name in new if old.get(name) != new[name]]
    message = f"system settings updated: {', '.join(sections) or 'no changes'}"
    if secrets:
        message += f"; secrets changed: {', '.join(secrets)}"
    return message
