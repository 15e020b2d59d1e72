"""The console user's own profile, avatar, account deletion and notification settings."""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

from kubebyon.db.database import Database
from tests.api.conftest import MakeUser, User, login

AVATAR = "/api/console/me/avatar"


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(out, fmt, **save)
    return out.getvalue()


def form(data: bytes, *, field: str = "avatar", filename: str = "me.png") -> FormData:
    body = FormData()
    body.add_field(field, data, filename=filename, content_type="image/png")
    return body


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side×side zero pixels: ~50 MB of pixels in a few KB."""
    row = b"\x00" * (1 + side // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body: dict[str, Any] = (await response.json())["error"]
    return body


async def audit_actions(db: Database, user_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT resource_type || '/' || action AS a FROM audit_events"
        " WHERE actor_user_id = $1 ORDER BY occurred_at, id",
        user_id,
    )
    return [row["a"] for row in rows]


# --- profile fields ---------------------------------------------------------------


async def test_profile_update_changes_the_fields_and_is_audited(
    client: TestClient, signed_in: User, db: Database
) -> None:
    response = await client.put(
        "/api/console/me",
        json={"display_name": "  Ada  ", "timezone": "Asia/Shanghai", "locale": "zh-CN"},
    )
    assert response.status == 200, await response.text()
    user = (await response.json())["user"]
    assert (user["display_name"], user["timezone"], user["locale"]) == (
        "Ada",
        "Asia/Shanghai",
        "zh-CN",
    )
    me = (await (await client.get("/api/console/me")).json())["user"]
    assert me["display_name"] == "Ada"
    assert me["timezone"] == "Asia/Shanghai"
    # A partial update leaves the other fields alone.
    response = await client.put("/api/console/me", json={"locale": "en-GB"})
    user = (await response.json())["user"]
    assert (user["display_name"], user["locale"]) == ("Ada", "en-GB")
    assert await audit_actions(db, signed_in.id) == [
        "session/login",
        "user/update_profile",
        "user/update_profile",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": "x" * 101}, "display_name"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"locale": "english please"}, "locale"),
        ({"display_name": "ok", "role": "admin"}, "role"),
        ({"display_name": 7}, "display_name"),
        ({}, "(body)"),
    ],
)
async def test_profile_update_rejects_bad_fields_without_changing_anything(
    client: TestClient, signed_in: User, db: Database, body: dict[str, Any], field: str
) -> None:
    error = await error_of(await client.put("/api/console/me", json=body), 400)
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    row = await db.fetchrow(
        "SELECT display_name, timezone, role FROM users WHERE id=$1", signed_in.id
    )
    assert row is not None
    assert (row["display_name"], row["timezone"], row["role"]) == ("", "UTC", "user")
    assert "user/update_profile" not in await audit_actions(db, signed_in.id)


async def test_profile_routes_need_a_signed_in_user(client: TestClient) -> None:
    assert (await client.put("/api/console/me", json={"locale": "en"})).status == 401
    assert (await client.get(AVATAR)).status == 401
    assert (await client.get("/api/console/settings/notifications")).status == 401


# --- avatar -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
async def test_avatar_upload_stores_a_reencoded_image_served_privately(
    client: TestClient, signed_in: User, db: Database, fmt: str, content_type: str
) -> None:
    assert (await client.get(AVATAR)).status == 404
    original = image_bytes(fmt)
    # The declared name and type say PNG whatever the bytes are: only decoding counts.
    response = await client.post(AVATAR, data=form(original))
    assert response.status == 200, await response.text()
    user = (await response.json())["user"]
    assert user["has_avatar"] is True
    assert user["avatar_updated_at"] is not None

    served = await client.get(AVATAR)
    assert served.status == 200
    assert served.headers["Content-Type"] == content_type
    assert served.headers["Cache-Control"] == "private"
    stored = await served.read()
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == fmt
        assert image.size == (64, 48)
    assert "user/update_avatar" in await audit_actions(db, signed_in.id)


async def test_avatar_metadata_is_stripped_and_the_field_may_be_called_file(
    client: TestClient, signed_in: User
) -> None:
    exif = Image.Exif()
    exif[0x013B] = "SECRET-ARTIST-NAME"  # Artist
    exif[0x8825] = {2: (52.0, 31.0, 12.0)}  # GPSInfo: latitude
    original = image_bytes("JPEG", exif=exif.tobytes())
    assert b"SECRET-ARTIST-NAME" in original
    response = await client.post(AVATAR, data=form(original, field="file", filename="a.jpg"))
    assert response.status == 200, await response.text()
    stored = await (await client.get(AVATAR)).read()
    assert b"SECRET-ARTIST-NAME" not in stored
    assert b"Exif" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert not image.getexif()


async def test_avatar_follows_the_exif_orientation(client: TestClient, signed_in: User) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    original = image_bytes("JPEG", size=(64, 32), exif=exif.tobytes())
    assert (await client.post(AVATAR, data=form(original))).status == 200
    with Image.open(io.BytesIO(await (await client.get(AVATAR)).read())) as image:
        assert image.size == (32, 64)


def _gif() -> bytes:
    return image_bytes("GIF")


def _truncated_png() -> bytes:
    return image_bytes("PNG", size=(300, 300))[:200]


@pytest.mark.parametrize(
    ("payload", "code", "rule"),
    [
        (lambda: b"hello, I am not an image", "avatar_unsupported_format", "PNG, JPEG or WebP"),
        (_gif, "avatar_unsupported_format", "PNG, JPEG or WebP"),
        (lambda: image_bytes("BMP"), "avatar_unsupported_format", "PNG, JPEG or WebP"),
        (lambda: image_bytes("PNG", size=(1025, 8)), "avatar_too_many_pixels", "1024×1024"),
        (lambda: image_bytes("JPEG", size=(8, 1025)), "avatar_too_many_pixels", "1024×1024"),
        (decompression_bomb, "avatar_too_many_pixels", "1024×1024"),
        (_truncated_png, "avatar_invalid", "decoded"),
    ],
)
async def test_avatar_uploads_that_break_a_rule_are_400_naming_it(
    client: TestClient, signed_in: User, db: Database, payload: Any, code: str, rule: str
) -> None:
    error = await error_of(await client.post(AVATAR, data=form(payload())), 400)
    assert error["code"] == code
    assert rule in error["message"]
    assert (await client.get(AVATAR)).status == 404
    assert "user/update_avatar" not in await audit_actions(db, signed_in.id)


@pytest.mark.parametrize("size", [1024 * 1024 + 1, 1024 * 1024 + 20_000, 3 * 1024 * 1024])
async def test_avatar_over_one_mib_is_400_naming_the_rule_not_a_bare_413(
    client: TestClient, signed_in: User, size: int
) -> None:
    # Random bytes behind a PNG signature: too large is checked before decoding.
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)
    error = await error_of(await client.post(AVATAR, data=form(data)), 400)
    assert error["code"] == "avatar_too_large"
    assert "1 MiB" in error["message"]


async def test_avatar_over_one_mib_without_content_length_is_stopped_while_streaming(
    client: TestClient, signed_in: User
) -> None:
    boundary = "kbtestboundary"

    async def chunks() -> Any:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="avatar"; '
            f'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        for _ in range(40):  # 2.5 MiB in total
            yield os.urandom(64 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        AVATAR,
        data=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    error = await error_of(response, 400)
    assert error["code"] == "avatar_too_large"


async def test_avatar_requests_of_the_wrong_shape_are_400(
    client: TestClient, signed_in: User
) -> None:
    error = await error_of(await client.post(AVATAR, json={"avatar": "aGk="}), 400)
    assert "multipart/form-data" in error["message"]
    error = await error_of(
        await client.post(AVATAR, data=form(image_bytes("PNG"), field="picture")), 400
    )
    assert "avatar" in error["message"]
    crowded = FormData()
    for n in range(50):  # the image hidden behind many other fields is not looked for
        crowded.add_field(f"f{n}", "x")
    crowded.add_field("avatar", image_bytes("PNG"), filename="a.png")
    error = await error_of(await client.post(AVATAR, data=crowded), 400)
    assert "avatar" in error["message"]
    broken = await client.post(
        AVATAR,
        data=b"--x\r\nthis is not a part header at all",
        headers={"Content-Type": "multipart/form-data; boundary=y"},
    )
    await error_of(broken, 400)
    no_boundary = await client.post(
        AVATAR, data=b"abc", headers={"Content-Type": "multipart/form-data"}
    )
    await error_of(no_boundary, 400)


# --- account deletion -------------------------------------------------------------


async def test_deleting_the_account_needs_the_current_password(
    client: TestClient, signed_in: User, db: Database
) -> None:
    error = await error_of(
        await client.delete("/api/console/me", json={"password": "not-my-password"}), 401
    )
    assert error["code"] == "invalid_credentials"
    await error_of(await client.delete("/api/console/me", json={}), 400)
    assert (await client.get("/api/console/me")).status == 200
    status = await db.fetchval("SELECT status FROM users WHERE id=$1", signed_in.id)
    assert status == "active"


async def test_deleting_the_account_soft_deletes_and_revokes_every_credential(
    client: TestClient, signed_in: User, db: Database, make_user: MakeUser
) -> None:
    created = await client.post("/api/console/api-keys", json={"name": "ci"})
    key = (await created.json())["api_key"]["key"]
    await client.post(AVATAR, data=form(image_bytes("PNG")))

    response = await client.delete("/api/console/me", json={"password": signed_in.password})
    assert response.status == 200, await response.text()
    cookie = response.cookies["kubebyon_session"]
    assert cookie.value == ""
    assert cookie["max-age"] == "0"

    row = await db.fetchrow("SELECT * FROM users WHERE id=$1", signed_in.id)
    assert row is not None
    assert row["status"] == "deleted"
    assert row["deleted_at"] is not None
    assert row["email"] == signed_in.email  # kept for history
    assert row["avatar"] is None
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sessions WHERE user_id=$1 AND revoked_at IS NULL", signed_in.id
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM api_keys WHERE user_id=$1 AND revoked_at IS NULL", signed_in.id
        )
        == 0
    )
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/api/console/me", headers=bearer)).status == 401
    event = await db.fetchrow(
        "SELECT * FROM audit_events WHERE action='delete_current_user' AND actor_user_id=$1",
        signed_in.id,
    )
    assert event is not None
    assert event["resource_type"] == "user"
    assert signed_in.password not in event["message"]

    # The address is free for a new account, and the old password no longer signs in.
    login_again = await client.post(
        "/api/auth/login", json={"email": signed_in.email, "password": signed_in.password}
    )
    assert login_again.status == 401
    fresh = await make_user(signed_in.email)
    await login(client, fresh)
    me = (await (await client.get("/api/console/me")).json())["user"]
    assert me["id"] == fresh.id


async def test_deleting_the_account_ends_its_other_sessions_too(
    client: TestClient, signed_in: User
) -> None:
    other = TestClient(client.server)
    await other.start_server()
    try:
        await login(other, signed_in)
        assert (await other.get("/api/console/me")).status == 200
        response = await client.delete("/api/console/me", json={"password": signed_in.password})
        assert response.status == 200
        assert (await other.get("/api/console/me")).status == 401
    finally:
        await other.close()


async def test_an_account_without_a_password_cannot_be_deleted_until_it_sets_one(
    client: TestClient, signed_in: User, db: Database
) -> None:
    await db.execute("UPDATE users SET password_hash = NULL WHERE id=$1", signed_in.id)
    error = await error_of(
        await client.delete("/api/console/me", json={"password": signed_in.password}), 409
    )
    assert error["code"] == "password_not_set"
    assert await db.fetchval("SELECT status FROM users WHERE id=$1", signed_in.id) == "active"


async def test_password_guesses_on_account_deletion_are_rate_limited(
    client: TestClient, signed_in: User
) -> None:
    statuses = [
        (await client.delete("/api/console/me", json={"password": f"guess-{n}"})).status
        for n in range(6)
    ]
    assert statuses == [401] * 5 + [429]


# --- notification settings --------------------------------------------------------

NOTIFICATIONS = "/api/console/settings/notifications"


async def test_notification_settings_default_until_saved(
    client: TestClient, signed_in: User
) -> None:
    settings = (await (await client.get(NOTIFICATIONS)).json())["settings"]
    assert settings == {
        "email_notifications": True,
        "slack_notifications": False,
        "slack_target": None,
        "telegram_notifications": False,
        "telegram_chat_id": None,
        "updated_at": None,
    }


async def test_notification_settings_save_merge_and_are_audited(
    client: TestClient, signed_in: User, db: Database
) -> None:
    response = await client.put(
        NOTIFICATIONS,
        json={
            "email_notifications": False,
            "slack_notifications": True,
            "slack_target": "U012AB3CD",
        },
    )
    assert response.status == 200, await response.text()
    saved = (await response.json())["settings"]
    assert saved["email_notifications"] is False
    assert saved["slack_notifications"] is True
    assert saved["slack_target"] == "U012AB3CD"
    assert saved["updated_at"] is not None
    # Sending back what was read works (updated_at is ignored); omitted fields stay.
    echoed = {**saved, "telegram_notifications": True, "telegram_chat_id": "-1001234567890"}
    response = await client.put(NOTIFICATIONS, json=echoed)
    assert response.status == 200, await response.text()
    response = await client.put(NOTIFICATIONS, json={"slack_notifications": False})
    final = (await (await client.get(NOTIFICATIONS)).json())["settings"]
    assert final["email_notifications"] is False
    assert final["slack_notifications"] is False
    assert final["slack_target"] == "U012AB3CD"
    assert final["telegram_notifications"] is True
    assert final["telegram_chat_id"] == "-1001234567890"
    events = await db.fetch(
        "SELECT message FROM audit_events WHERE resource_type='notification_settings'"
        " AND action='update' AND actor_user_id=$1",
        signed_in.id,
    )
    assert len(events) == 3
    assert all("U012AB3CD" not in e["message"] for e in events)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slack_notifications": True}, "slack_target"),
        ({"slack_notifications": True, "slack_target": ""}, "slack_target"),
        ({"slack_notifications": True, "slack_target": None}, "slack_target"),
        ({"telegram_notifications": True}, "telegram_chat_id"),
        ({"telegram_notifications": True, "telegram_chat_id": "  "}, "telegram_chat_id"),
        ({"telegram_notifications": True, "telegram_chat_id": "not a chat"}, "telegram_chat_id"),
        ({"slack_notifications": "sometimes"}, "slack_notifications"),
        ({"sms_notifications": True}, "sms_notifications"),
    ],
)
async def test_enabling_a_channel_without_its_target_is_a_validation_error(
    client: TestClient, signed_in: User, db: Database, body: dict[str, Any], field: str
) -> None:
    error = await error_of(await client.put(NOTIFICATIONS, json=body), 400)
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    assert field in error["message"]
    assert await db.fetchval("SELECT count(*) FROM notification_settings") == 0


async def test_clearing_a_target_of_an_enabled_channel_is_refused(
    client: TestClient, signed_in: User
) -> None:
    enable = {"slack_notifications": True, "slack_target": "C0123ABC"}
    assert (await client.put(NOTIFICATIONS, json=enable)).status == 200
    error = await error_of(await client.put(NOTIFICATIONS, json={"slack_target": None}), 400)
    assert error["details"][0]["field"] == "slack_target"
    settings = (await (await client.get(NOTIFICATIONS)).json())["settings"]
    assert settings["slack_target"] == "C0123ABC"
