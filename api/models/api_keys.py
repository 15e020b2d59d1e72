"""Models of the console API-key endpoints. The key itself is shown once, at creation."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from api.models.auth import StrictModel


class ApiKeyCreateRequest(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    expires_at: AwareDatetime | None = Field(default=None, description="RFC 3339, in the future.")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @model_validator(mode="after")
    def _one_expiry(self) -> ApiKeyCreateRequest:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to tell keys apart.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class CreatedApiKey(ApiKeyOut):
    key: str = Field(description="The full key. Shown only in this response; store it now.")


class ApiKeyListResponse(BaseModel):
    api_keys: list[ApiKeyOut]


class ApiKeyCreatedResponse(BaseModel):
    api_key: CreatedApiKey
