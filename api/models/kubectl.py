"""Models of the console kubectl proxy (seed §3.7)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from api.models.auth import StrictModel

MAX_ARGS = 64


class KubectlRequest(StrictModel):
    args: list[Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ARGS,
        description='kubectl\'s arguments without "kubectl", e.g. ["get", "pods", "-A"].',
        examples=[["get", "pods", "-A"]],
    )
    command: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="The same as one line, split like a POSIX shell would (never run by one).",
        examples=["get pods -A"],
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> KubectlRequest:
        if (self.args is None) == (self.command is None):
            raise ValueError("give either args or command, not both")
        return self


class KubectlResponse(BaseModel):
    stdout: str
    stderr: str
    exit_code: int = Field(description="kubectl's exit status; non-zero when it failed.")
    truncated: bool = Field(description="Output beyond the server's size cap was dropped.")
