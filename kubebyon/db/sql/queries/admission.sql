-- Host admission webhooks (api/routes/admission.py).

-- name: admission_cluster
SELECT id, namespace FROM clusters WHERE id = $1 AND status <> 'deleted';

-- name: admission_kubebyon_namespace
-- A namespace some KubeBYON cluster (not deleted) owns on the host.
SELECT EXISTS (SELECT 1 FROM clusters WHERE namespace = $1 AND status <> 'deleted');
