"""Job handlers for cluster_create, cluster_update and cluster_delete (seed §2.6/§2.7).

The vcluster reconciler does all host work (level-based, so a crash or a newer change
loses nothing); a job only tracks its operation. It succeeds once the cluster has
reached the generation the job was written for (``payload.generation``) in the status
the operation aims at, fails when the reconciler reported an error for that generation
(or the cluster is being deleted under a create/update), and otherwise looks again
later with ``NotYet`` — waiting for an install never uses up the job's attempts. The
reconciler's progress is mirrored into the operation's ``stage``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubebyon.domain.clusters import CREATE, DELETE, UPDATE
from kubebyon.runtime.contract import NotYet, PermanentError
from kubebyon.runtime.jobs import JobContext, JobHandler

TARGET = {CREATE: "ready", UPDATE: "ready", DELETE: "deleted"}


class ClusterOperationTracker:
    def __init__(self, *, poll_seconds: float) -> None:
        # The reconciler makes a waiting job due at once when the cluster's status
        # changes; the poll is the safety net and refreshes the stage.
        self.poll_seconds = poll_seconds

    async def __call__(self, ctx: JobContext) -> None:
        job = ctx.job
        row = await ctx.db.fetchrow(
            ctx.db.q.cluster_job_progress, job["cluster_id"], job["operation_id"]
        )
        if row is None:
            raise PermanentError(f"cluster {job['cluster_id']} does not exist")
        target = TARGET[job["type"]]
        generation = int(ctx.payload.get("generation") or row["generation"])
        status, observed = row["status"], row["observed_generation"]
        if status == "deleted" and target == "deleted":
            return
        if target == "ready":
            if status in ("deleting", "deleted"):
                raise PermanentError("the cluster was deleted before this operation finished")
            if observed >= generation:
                if status == "ready":
                    return
                if status == "error":
                    raise PermanentError(row["last_error_message"] or "the cluster is in error")
        stage = str((row["last_status"] or {}).get("stage") or "queued")
        if stage == "ready":  # the reconciler has not started on this change yet
            stage = "queued"
        if stage != row["operation_stage"]:
            await ctx.set_stage(stage)
        raise NotYet(f"cluster is {status} ({stage})", delay=self.poll_seconds)


def cluster_job_handlers(*, poll_seconds: float) -> Mapping[str, JobHandler]:
    tracker = ClusterOperationTracker(poll_seconds=poll_seconds)
    return dict.fromkeys(TARGET, tracker)
