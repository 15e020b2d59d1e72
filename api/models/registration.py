"""Models of password registration and reset by e-mail code (seed: Auth / Identity)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from api.models.auth import StrictModel

Email = Annotated[str, Field(min_length=3, max_length=254)]
Code = Annotated[str, Field(min_length=1, max_length=32, description="the digits from the mail")]
# The length rule (10+) is checked by the handler, so that its 400 names the rule.
NewPassword = Annotated[str, Field(min_length=1, max_length=1024)]
CaptchaToken = Annotated[str | None, Field(max_length=4096)]


class SendCodeRequest(StrictModel):
    email: Email
    captcha_token: CaptchaToken = None


class RegisterRequest(StrictModel):
    email: Email
    password: NewPassword
    email_verification_code: Code
    display_name: str | None = Field(default=None, max_length=100)
    captcha_token: CaptchaToken = None


class ResetPasswordRequest(StrictModel):
    email: Email
    email_verification_code: Code
    new_password: NewPassword


class CodeSentResponse(BaseModel):
    """The same answer whether or not the address has an account."""

    ok: bool = True
    expires_in_seconds: int
