"""The Kubernetes backend, tested as far as it can be without an API server: its manifests
against the real Kubernetes OpenAPI schema (kubernetes-validate ships it offline), the state
mapping from V1JobStatus, and an unreachable API server making jobs retry with a reason. The
submission path against a live cluster is not tested here (no API server can run here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client

from govern.errors import JobBackendUnavailable
from govern.jobs import JobSpec
from govern.jobs.kubernetes_backend import (
    KubernetesBackend,
    job_manifest,
    k8s_name,
    secret_manifest,
    state_of,
)
from tests.conftest import TEST_ACTOR, free_port
from tests.unit.jobs.conftest import GatewayFactory, add_request, python_spec

K8S_VERSION = "1.33.0"
SECRET_ENV = {"GOVERN_TOKEN": "eyJ-the-bearer-token", "GOVERN_FLIGHT_URL": "grpc://gw:8815"}


def as_dict(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = client.ApiClient().sanitize_for_serialization(model)
    return out


def gpu_spec() -> JobSpec:
    return JobSpec(
        kind="unlearn",
        run_id="Run_42/with odd chars",
        principal_id="demo-trainer",
        argv=("python", "examples/train_reference.py", "--shards", "4"),
        env={"GOVERN_RUN_ID": "run-42-r1", "SEED": "7"},
        gpus=2,
        cpus=3.5,
        memory_mb=16384,
        workdir="/app",
    )


def manifests(spec: JobSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    ext = "job-0123456789abcdef01234567-a1b2c3"
    job = job_manifest(
        ext,
        spec,
        namespace="ml",
        image="govern:1.0",
        ttl_seconds=600,
        secret_keys=sorted(SECRET_ENV),
    )
    return as_dict(job), as_dict(secret_manifest(ext, SECRET_ENV, "ml"))


@pytest.mark.parametrize("spec", [gpu_spec(), python_spec("pass")], ids=["gpu", "cpu"])
def test_job_and_secret_manifests_validate_against_the_kubernetes_schema(spec: JobSpec) -> None:
    job, secret = manifests(spec)
    # strict: unknown fields are errors too, so a misspelt field cannot pass.
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)


def test_a_manifest_that_breaks_the_schema_is_caught() -> None:
    job, _ = manifests(gpu_spec())
    job["spec"]["backoffLimit"] = "zero"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_the_job_requests_gpus_and_reads_its_token_from_the_secret_not_inline() -> None:
    job, secret = manifests(gpu_spec())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 600
    assert container["resources"]["limits"] == {"memory": "16384Mi", "nvidia.com/gpu": "2"}
    assert container["resources"]["requests"] == {"cpu": "3500m", "memory": "16384Mi"}
    assert container["command"] == list(gpu_spec().argv) and container["workingDir"] == "/app"
    env = {e["name"]: e for e in container["env"]}
    assert env["SEED"] == {"name": "SEED", "value": "7"}
    assert env["GOVERN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "GOVERN_TOKEN",
    }
    assert SECRET_ENV["GOVERN_TOKEN"] not in json.dumps(job)
    assert secret["stringData"] == SECRET_ENV and secret["type"] == "Opaque"
    assert job["metadata"]["annotations"]["govern.io/run-id"] == "Run_42/with odd chars"


def test_names_are_dns_labels() -> None:
    long_id = "job-" + "A" * 80 + "_x"
    name = k8s_name(long_id)
    assert len(name) <= 63 and name == name.lower()
    assert all(c.isalnum() or c == "-" for c in name) and name[0] != "-" and name[-1] != "-"
    assert k8s_name("job-abc-1") == "govern-job-abc-1"
    assert python_spec("pass").cpus == 1.0
    (container,) = manifests(python_spec("pass"))[0]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == "1"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def cond(
    kind: str, status: str = "True", reason: str | None = None, message: str | None = None
) -> Any:
    return client.V1JobCondition(type=kind, status=status, reason=reason, message=message)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (None, "submitted"),
        (client.V1JobStatus(), "submitted"),
        (client.V1JobStatus(active=1), "running"),
        (client.V1JobStatus(conditions=[cond("Suspended")]), "submitted"),
        (client.V1JobStatus(active=1, conditions=[cond("FailureTarget")]), "running"),
        (client.V1JobStatus(succeeded=1, conditions=[cond("Complete")]), "succeeded"),
        (client.V1JobStatus(conditions=[cond("SuccessCriteriaMet")]), "succeeded"),
        (client.V1JobStatus(conditions=[cond("Complete", "False")], active=1), "running"),
        (client.V1JobStatus(failed=1, conditions=[cond("Failed")]), "failed"),
    ],
)
def test_job_state_follows_the_job_status_conditions(status: Any, state: str) -> None:
    assert state_of(status).state == state


def test_a_failed_job_says_why() -> None:
    status = client.V1JobStatus(
        failed=1,
        conditions=[cond("Failed", reason="BackoffLimitExceeded", message="reached limit")],
    )
    assert state_of(status).message == "Job failed: BackoffLimitExceeded: reached limit"


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_an_unreachable_api_server_is_unavailable_with_its_address(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    backend = KubernetesBackend(
        namespace="ml", image="govern:1", kubeconfig=kubeconfig(tmp_path, server), ttl_seconds=60
    )
    with pytest.raises(JobBackendUnavailable) as exc:
        backend.submit("job-x-1", python_spec("pass"), SECRET_ENV)
    assert server in exc.value.message and "unreachable" in exc.value.message
    with pytest.raises(JobBackendUnavailable):
        backend.status("job-x-1")
    backend.close()


def test_a_missing_kubeconfig_is_unavailable_with_a_reason(tmp_path: Path) -> None:
    backend = KubernetesBackend(
        namespace="ml", image="i", kubeconfig=tmp_path / "absent", ttl_seconds=60
    )
    with pytest.raises(JobBackendUnavailable, match=r"configuration from .*absent"):
        backend.submit("job-x-1", python_spec("pass"), SECRET_ENV)


def test_jobs_retry_while_the_api_server_is_unreachable(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    gateway = make_gateway(
        jobs_backend="kubernetes",
        jobs_kubernetes_config=kubeconfig(tmp_path, server),
        jobs_retry_seconds=30,
    )
    gateway.commands.put_principal("trainer-1", ["trainer"], {}, TEST_ACTOR)
    rid = add_request(gateway)
    (job_id,) = gateway.commands.enqueue_jobs(rid, [python_spec("pass")], TEST_ACTOR)
    gateway.run_jobs_once()
    waiting = gateway.queries.job(job_id)
    assert (waiting.state, waiting.backend, waiting.attempts) == ("retrying", "kubernetes", 1)
    assert server in waiting.message and "next attempt at" in waiting.message
    assert gateway.queries.erasure_request(rid).info.state == "excluded"
