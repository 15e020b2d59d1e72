"""Host admission webhooks of a cluster (seed "Admission / Internal"; domain rules in
kubebyon/domain/admission.py).

The host's API server calls these with an ``admission.k8s.io/v1`` AdmissionReview; there
is no caller identity, so the path's signature (an HMAC of the cluster id) is the
credential, checked first and in constant time: a wrong one is 403 whether or not the
cluster exists. An unknown (or deleted) cluster is 404, a review that cannot be read 400.
"""

from __future__ import annotations

import base64
import json

from aiohttp import web

from api.body import read_json
from api.errors import ApiError
from api.models.admission import (
    AdmissionResponse,
    AdmissionReviewRequest,
    AdmissionReviewResponse,
    AdmissionStatus,
)
from api.openapi import RouteTable
from api.state import services
from kubebyon.domain.admission import (
    KEY_PURPOSE,
    MalformedReview,
    mutation,
    refusal,
    signature_matches,
)

routes = RouteTable("admission")

ADMISSION = "/api/internal/admission/clusters/{clusterID}/{signature}"
STATUSES = (400, 403, 404)


async def _review(request: web.Request, *, mutate: bool) -> web.Response:
    svc = services(request)
    cluster_id = request.match_info["clusterID"]
    key = svc.secrets.derive_key(KEY_PURPOSE)
    if not signature_matches(key, cluster_id, request.match_info["signature"]):
        raise ApiError(403, "the signature does not match this cluster", "forbidden")
    cluster = await svc.db.fetchrow(svc.db.q.admission_cluster, cluster_id)
    if cluster is None:
        raise ApiError(404, "cluster not found", "not_found")
    review = (await read_json(request, AdmissionReviewRequest)).request
    answer = AdmissionResponse(uid=review.uid, allowed=True)
    is_pod = (review.kind.group, review.kind.kind) == ("", "Pod")
    try:
        if is_pod and mutate and review.operation == "CREATE":
            if patch := mutation(cluster_id, review.object):
                answer.patchType = "JSONPatch"
                answer.patch = base64.b64encode(json.dumps(patch).encode()).decode()
        elif is_pod and not mutate and review.operation in ("CREATE", "UPDATE"):
            namespace = review.namespace
            kubebyon_namespace = namespace == cluster["namespace"] or bool(
                await svc.db.fetchval(svc.db.q.admission_kubebyon_namespace, namespace)
            )
            message = refusal(
                cluster_id,
                cluster["namespace"],
                namespace,
                review.object,
                kubebyon_namespace=kubebyon_namespace,
            )
            if message is not None:
                answer.allowed = False
                answer.status = AdmissionStatus(code=403, message=message)
    except MalformedReview as exc:
        raise ApiError(400, str(exc), "invalid_request") from None
    body = AdmissionReviewResponse(response=answer)
    return web.json_response(body.model_dump(mode="json", exclude_none=True))


@routes.route(
    "POST",
    ADMISSION + "/mutate-pod",
    summary="Host mutating webhook: add the cluster's node selector and toleration to a pod",
    request=AdmissionReviewRequest,
    response=AdmissionReviewResponse,
    auth="none",
    statuses=STATUSES,
)
async def mutate_pod(request: web.Request) -> web.Response:
    return await _review(request, mutate=True)


@routes.route(
    "POST",
    ADMISSION + "/validate-pod",
    summary="Host validating webhook: refuse pods that could run on another cluster's nodes",
    request=AdmissionReviewRequest,
    response=AdmissionReviewResponse,
    auth="none",
    statuses=STATUSES,
)
async def validate_pod(request: web.Request) -> web.Response:
    return await _review(request, mutate=False)
