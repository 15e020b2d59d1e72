"""Models of the console node actions (seed "Nodes": cordon, uncordon, drain, delete)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.models.clusters import JobOut, OperationOut

NodeAction = Literal["cordon", "uncordon", "drain", "delete"]


class NodeActionResponse(BaseModel):
    node_id: str
    node_name: str
    cluster_id: str
    action: NodeAction
    operation: OperationOut = Field(
        description="Listed in the cluster's operations; its stage shows the progress "
        "(a drain: evicting N/M)."
    )
    job: JobOut
    note: str | None = Field(
        None, description="Delete: the machine keeps running the agent until uninstalled."
    )
