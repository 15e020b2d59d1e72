"""Models of the console user's own profile, account and notification settings."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from functools import cache

from pydantic import BaseModel, Field, field_validator, model_validator

from api.models.auth import StrictModel

# Short BCP 47 tags: language, then optional script/region/variant subtags ("zh-Hans-CN").
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}$")
_SLACK_TARGET = re.compile(r"^#?[A-Za-z0-9._-]{1,80}$")  # user, DM or channel ID (or name)
_TELEGRAM_CHAT = re.compile(r"^(?:-?\d{1,20}|@[A-Za-z0-9_]{4,32})$")  # numeric id or @channel


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class ProfileUpdateRequest(StrictModel):
    """Fields left out (or null) stay as they are."""

    display_name: str | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, description="An IANA time zone name.")
    locale: str | None = Field(default=None, description="A short BCP 47 tag, e.g. en, zh-CN.")

    @field_validator("display_name")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.isprintable():
            raise ValueError("must not contain control characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _timezones():
            raise ValueError("must be an IANA time zone name such as Europe/Berlin")
        return value

    @field_validator("locale")
    @classmethod
    def _short_tag(cls, value: str | None) -> str | None:
        if value is not None and not _LOCALE.match(value):
            raise ValueError("must be a short BCP 47 language tag such as en or zh-CN")
        return value

    @model_validator(mode="after")
    def _something(self) -> ProfileUpdateRequest:
        if self.display_name is None and self.timezone is None and self.locale is None:
            raise ValueError("give at least one of display_name, timezone, locale")
        return self


class DeleteAccountRequest(StrictModel):
    password: str = Field(min_length=1, max_length=1024, description="The current password.")


class NotificationSettings(BaseModel):
    email_notifications: bool = True
    slack_notifications: bool = False
    slack_target: str | None = None
    telegram_notifications: bool = False
    telegram_chat_id: str | None = None

    def problem(self) -> tuple[str, str] | None:
        """(field, message) when a personal channel is enabled without its target (seed)."""
        if self.slack_notifications and not self.slack_target:
            return "slack_target", "required when slack_notifications is enabled"
        if self.telegram_notifications and not self.telegram_chat_id:
            return "telegram_chat_id", "required when telegram_notifications is enabled"
        return None


class NotificationSettingsOut(NotificationSettings):
    updated_at: datetime | None = None


class NotificationSettingsResponse(BaseModel):
    settings: NotificationSettingsOut


class NotificationSettingsUpdate(StrictModel):
    """Fields left out stay as they are; a target set to null or "" is cleared."""

    email_notifications: bool | None = None
    slack_notifications: bool | None = None
    slack_target: str | None = Field(default=None, max_length=81)
    telegram_notifications: bool | None = None
    telegram_chat_id: str | None = Field(default=None, max_length=33)
    updated_at: datetime | None = Field(
        default=None, description="Ignored; accepted so a read settings object can be sent back."
    )

    @field_validator("slack_target", "telegram_chat_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("slack_target")
    @classmethod
    def _slack_target(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_TARGET.match(value):
            raise ValueError("must be a Slack user, DM or channel ID such as U012AB3CD")
        return value

    @field_validator("telegram_chat_id")
    @classmethod
    def _telegram_chat(cls, value: str | None) -> str | None:
        if value is not None and not _TELEGRAM_CHAT.match(value):
            raise ValueError("must be a numeric Telegram chat id or an @channel name")
        return value
