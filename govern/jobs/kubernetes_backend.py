"""The Kubernetes backend: each job attempt is a batch/v1 Job, its token in a Secret.

Manifests are built with the official client's models (``job_manifest``, ``secret_manifest``):
restartPolicy Never and backoffLimit 0 (the manager counts and makes retries, the same way for
every backend), ``ttlSecondsAfterFinished`` so finished Jobs are cleaned up, GPUs as
``nvidia.com/gpu`` limits, and the secret variables (the bearer token) referenced from the
Secret by ``secretKeyRef``, never written into the Job itself. The Job's name derives from the
attempt id, so a repeated submit meets 409 Conflict and starts nothing.

No Kubernetes API server can run where govern is tested; the manifests are validated there
against the API's OpenAPI schema, and the submission path against a live cluster is untested
(see docs/jobs.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from govern.errors import GovernError, JobBackendUnavailable
from govern.jobs.base import BackendStatus, JobBackend, JobSpec

__all__ = ["KubernetesBackend", "job_manifest", "k8s_name", "secret_manifest", "state_of"]

_MANAGED_BY = "govern"
_REQUEST_TIMEOUT = (5, 20)  # connect, read (seconds)


def k8s_name(external_id: str) -> str:
    """A DNS-1123 label for the attempt: lower case, [a-z0-9-], at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"govern-{external_id}".lower()).strip("-")
    return name[:63].rstrip("-")


def secret_manifest(external_id: str, secret_env: Mapping[str, str], namespace: str) -> Any:
    from kubernetes import client

    return client.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=client.V1ObjectMeta(
            name=k8s_name(external_id),
            namespace=namespace,
            labels={"app.kubernetes.io/managed-by": _MANAGED_BY},
        ),
        type="Opaque",
        string_data=dict(secret_env),
    )


def job_manifest(
    external_id: str,
    spec: JobSpec,
    *,
    namespace: str,
    image: str,
    ttl_seconds: int,
    secret_keys: list[str],
) -> Any:
    """The batch/v1 Job for one attempt; ``secret_keys`` are read from the Secret of the same
    name (see ``secret_manifest``)."""
    from kubernetes import client

    name = k8s_name(external_id)
    env = [client.V1EnvVar(name=k, value=v) for k, v in sorted(spec.env.items())]
    env += [
        client.V1EnvVar(
            name=key,
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name=name, key=key)
            ),
        )
        for key in secret_keys
    ]
    requests = {"cpu": _cpu(spec.cpus), "memory": f"{spec.memory_mb}Mi"}
    limits = {"memory": f"{spec.memory_mb}Mi"}
    if spec.gpus:
        # Extended resources are set as limits (a request, if given, must equal the limit).
        limits["nvidia.com/gpu"] = str(spec.gpus)
    labels = {"app.kubernetes.io/managed-by": _MANAGED_BY, "govern.io/kind": spec.kind}
    container = client.V1Container(
        name="job",
        image=image,
        command=list(spec.argv),
        env=env,
        working_dir=spec.workdir,
        resources=client.V1ResourceRequirements(requests=requests, limits=limits),
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels=labels,
            annotations={"govern.io/attempt": external_id, "govern.io/run-id": spec.run_id},
        ),
        spec=client.V1JobSpec(
            backoff_limit=0,
            ttl_seconds_after_finished=ttl_seconds,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(restart_policy="Never", containers=[container]),
            ),
        ),
    )


def _cpu(cpus: float) -> str:
    millis = max(1, round(cpus * 1000))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def state_of(status: Any) -> BackendStatus:
    """A Job's state from its V1JobStatus: the Complete and Failed conditions decide; before
    either, active pods mean running and none mean waiting to be scheduled."""
    if status is None:
        return BackendStatus("submitted", "waiting for Kubernetes to start the Job")
    true = {c.type: c for c in (status.conditions or []) if c.status == "True"}
    for kind in ("Complete", "SuccessCriteriaMet"):
        if kind in true:
            return BackendStatus("succeeded", true[kind].message or "Job complete")
    if "Failed" in true:
        cond = true["Failed"]
        reason = ": ".join(x for x in (cond.reason, cond.message) if x)
        return BackendStatus("failed", f"Job failed{': ' + reason if reason else ''}")
    if "FailureTarget" in true:
        return BackendStatus("running", "Job is failing; its pods are being terminated")
    if "Suspended" in true:
        return BackendStatus("submitted", "Job is suspended")
    if status.active:
        return BackendStatus("running", f"{status.active} pod(s) active")
    return BackendStatus("submitted", "waiting for a pod to be scheduled")


class KubernetesBackend(JobBackend):
    name = "kubernetes"

    def __init__(
        self, *, namespace: str, image: str, kubeconfig: Path | None, ttl_seconds: int
    ) -> None:
        self.namespace = namespace
        self.image = image
        self.kubeconfig = kubeconfig
        self.ttl_seconds = ttl_seconds
        self._api: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        from kubernetes import client, config

        with self._lock:
            if self._api is None:
                cfg = client.Configuration()
                try:
                    if self.kubeconfig is not None:
                        config.load_kube_config(  # type: ignore[no-untyped-call]
                            config_file=str(self.kubeconfig), client_configuration=cfg
                        )
                    else:
                        config.load_incluster_config(  # type: ignore[no-untyped-call]
                            client_configuration=cfg
                        )
                except (config.ConfigException, OSError, ValueError) as exc:
                    where = self.kubeconfig or "the in-cluster service account"
                    raise JobBackendUnavailable(
                        f"Kubernetes configuration from {where} is unusable: {exc}"
                    ) from exc
                cfg.retries = 0  # the manager retries, with backoff; fail fast here
                self._api = client.ApiClient(cfg)
            return self._api

    def _where(self) -> str:
        host = getattr(getattr(self._api, "configuration", None), "host", None)
        return f"the Kubernetes API server at {host}" if host else "the Kubernetes API server"

    def _call(self, fn: Any) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        api = self._client()
        try:
            return fn(api)
        except ApiException as exc:
            if exc.status in (0, 502, 503, 504) or exc.status is None:
                raise JobBackendUnavailable(
                    f"{self._where()} answered {exc.status}: {exc.reason}"
                ) from exc
            raise GovernError(
                f"{self._where()} refused the request ({exc.status} {exc.reason}): "
                f"{str(exc.body)[:300]}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = str(getattr(exc, "reason", None) or exc)[:300]
            raise JobBackendUnavailable(f"{self._where()} is unreachable: {reason}") from exc

    def submit(self, job_id: str, spec: JobSpec, secret_env: Mapping[str, str]) -> str:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        secret = secret_manifest(job_id, secret_env, self.namespace)
        job = job_manifest(
            job_id,
            spec,
            namespace=self.namespace,
            image=self.image,
            ttl_seconds=self.ttl_seconds,
            secret_keys=sorted(secret_env),
        )

        def run(api: Any) -> str:
            core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
            try:
                core.create_namespaced_secret(
                    self.namespace, secret, _request_timeout=_REQUEST_TIMEOUT
                )
            except ApiException as exc:
                if exc.status != 409:  # 409: this attempt's Secret exists already
                    raise
            try:
                created = batch.create_namespaced_job(
                    self.namespace, job, _request_timeout=_REQUEST_TIMEOUT
                )
            except ApiException as exc:
                if exc.status != 409:  # 409: submitted before; the same Job
                    raise
                return job_id
            # The Secret goes when the Job goes (ttlSecondsAfterFinished or a delete).
            core.patch_namespaced_secret(
                k8s_name(job_id),
                self.namespace,
                {
                    "metadata": {
                        "ownerReferences": [
                            {
                                "apiVersion": "batch/v1",
                                "kind": "Job",
                                "name": k8s_name(job_id),
                                "uid": created.metadata.uid if created.metadata else None,
                            }
                        ]
                    }
                },
                _request_timeout=_REQUEST_TIMEOUT,
            )
            return job_id

        result: str = self._call(run)
        return result

    def status(self, external_id: str) -> BackendStatus:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        def run(api: Any) -> BackendStatus:
            try:
                job = client.BatchV1Api(api).read_namespaced_job_status(
                    k8s_name(external_id), self.namespace, _request_timeout=_REQUEST_TIMEOUT
                )
            except ApiException as exc:
                if exc.status == 404:
                    return BackendStatus(
                        "failed",
                        f"Kubernetes has no Job {k8s_name(external_id)} "
                        "(deleted, or removed after ttlSecondsAfterFinished)",
                    )
                raise
            return state_of(job.status)

        result: BackendStatus = self._call(run)
        return result

    def cancel(self, external_id: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        def run(api: Any) -> None:
            try:
                client.BatchV1Api(api).delete_namespaced_job(
                    k8s_name(external_id),
                    self.namespace,
                    propagation_policy="Background",
                    _request_timeout=_REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        self._call(run)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None
