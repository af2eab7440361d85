"""Render charts/nodelimits with the real helm and pick the rendered objects apart.

Shared by tests/chart (offline: `helm template`, `helm lint`) and tests/e2e/test_chart.py
(install into the real control plane). `HANDLER_PATHS` is the server's contract, written
here independently of the chart's own table, so a typo on either side fails a test
instead of silently allowing everything (kopf allows a request to an unknown path).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHART",
    "HANDLERS",
    "HANDLER_PATHS",
    "NAMESPACE",
    "RELEASE",
    "ChartError",
    "Rendered",
    "render",
    "run_helm",
    "values_args",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "nodelimits"
RELEASE = "nl"
NAMESPACE = "nodelimits-system"
HELM_TIMEOUT = 60.0

HANDLERS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("Pod", "", "pods", "/pods", ("CREATE", "UPDATE")),
    ("Pod", "", "pods/resize", "/pods-resize", ("UPDATE",)),
    ("Job", "batch", "jobs", "/jobs", ("CREATE", "UPDATE")),
    ("CronJob", "batch", "cronjobs", "/cronjobs", ("CREATE", "UPDATE")),
    ("Deployment", "apps", "deployments", "/deployments", ("CREATE", "UPDATE")),
    ("StatefulSet", "apps", "statefulsets", "/statefulsets", ("CREATE", "UPDATE")),
    ("DaemonSet", "apps", "daemonsets", "/daemonsets", ("CREATE", "UPDATE")),
    ("ReplicaSet", "apps", "replicasets", "/replicasets", ("CREATE", "UPDATE")),
    (
        "ReplicationController",
        "",
        "replicationcontrollers",
        "/replicationcontrollers",
        ("CREATE", "UPDATE"),
    ),
    ("PodTemplate", "", "podtemplates", "/podtemplates", ("CREATE", "UPDATE")),
    # The kind table's kinds (issue 15): Kind.group, path /<group>/<version>/<plural>.
    (
        "Job.batch.volcano.sh",
        "batch.volcano.sh",
        "jobs",
        "/batch.volcano.sh/v1alpha1/jobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "CronJob.batch.volcano.sh",
        "batch.volcano.sh",
        "cronjobs",
        "/batch.volcano.sh/v1alpha1/cronjobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "PyTorchJob.kubeflow.org",
        "kubeflow.org",
        "pytorchjobs",
        "/kubeflow.org/v1/pytorchjobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "TFJob.kubeflow.org",
        "kubeflow.org",
        "tfjobs",
        "/kubeflow.org/v1/tfjobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "XGBoostJob.kubeflow.org",
        "kubeflow.org",
        "xgboostjobs",
        "/kubeflow.org/v1/xgboostjobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "PaddleJob.kubeflow.org",
        "kubeflow.org",
        "paddlejobs",
        "/kubeflow.org/v1/paddlejobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "JAXJob.kubeflow.org",
        "kubeflow.org",
        "jaxjobs",
        "/kubeflow.org/v1/jaxjobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "MPIJob.kubeflow.org",
        "kubeflow.org",
        "mpijobs",
        "/kubeflow.org/v1/mpijobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "MPIJob.kubeflow.org",
        "kubeflow.org",
        "mpijobs",
        "/kubeflow.org/v2beta1/mpijobs",
        ("CREATE", "UPDATE"),
    ),
    (
        "JobSet.jobset.x-k8s.io",
        "jobset.x-k8s.io",
        "jobsets",
        "/jobset.x-k8s.io/v1alpha2/jobsets",
        ("CREATE", "UPDATE"),
    ),
    (
        "LeaderWorkerSet.leaderworkerset.x-k8s.io",
        "leaderworkerset.x-k8s.io",
        "leaderworkersets",
        "/leaderworkerset.x-k8s.io/v1/leaderworkersets",
        ("CREATE", "UPDATE"),
    ),
    ("RayCluster.ray.io", "ray.io", "rayclusters", "/ray.io/v1/rayclusters", ("CREATE", "UPDATE")),
    ("RayService.ray.io", "ray.io", "rayservices", "/ray.io/v1/rayservices", ("CREATE", "UPDATE")),
    ("RayJob.ray.io", "ray.io", "rayjobs", "/ray.io/v1/rayjobs", ("CREATE", "UPDATE")),
    (
        "Workflow.argoproj.io",
        "argoproj.io",
        "workflows",
        "/argoproj.io/v1alpha1/workflows",
        ("CREATE", "UPDATE"),
    ),
    (
        "WorkflowTemplate.argoproj.io",
        "argoproj.io",
        "workflowtemplates",
        "/argoproj.io/v1alpha1/workflowtemplates",
        ("CREATE", "UPDATE"),
    ),
    (
        "ClusterWorkflowTemplate.argoproj.io",
        "argoproj.io",
        "clusterworkflowtemplates",
        "/argoproj.io/v1alpha1/clusterworkflowtemplates",
        ("CREATE", "UPDATE"),
    ),
    (
        "CronWorkflow.argoproj.io",
        "argoproj.io",
        "cronworkflows",
        "/argoproj.io/v1alpha1/cronworkflows",
        ("CREATE", "UPDATE"),
    ),
    (
        "SparkApplication.sparkoperator.k8s.io",
        "sparkoperator.k8s.io",
        "sparkapplications",
        "/sparkoperator.k8s.io/v1beta2/sparkapplications",
        ("CREATE", "UPDATE"),
    ),
    (
        "ScheduledSparkApplication.sparkoperator.k8s.io",
        "sparkoperator.k8s.io",
        "scheduledsparkapplications",
        "/sparkoperator.k8s.io/v1beta2/scheduledsparkapplications",
        ("CREATE", "UPDATE"),
    ),
    (
        "TrainJob.trainer.kubeflow.org",
        "trainer.kubeflow.org",
        "trainjobs",
        "/trainer.kubeflow.org/v1alpha1/trainjobs",
        ("CREATE", "UPDATE"),
    ),
)
"""(kind, API group, resource, URL path, operations) of every handler of `nodelimits serve`."""
HANDLER_PATHS: Mapping[str, tuple[str, ...]] = {
    kind: tuple(h[3] for h in HANDLERS if h[0] == kind) for kind, *_ in HANDLERS
}
"""Kind -> the exact URL paths of its kopf handlers."""


class ChartError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


def run_helm(helm: Path, *args: str) -> str:
    result = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=HELM_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise ChartError(f"helm {' '.join(args[:2])} failed:\n{result.stderr.strip()}")
    return result.stdout


def values_args(values: Mapping[str, Any] | None, tmp: Path) -> list[str]:
    """`-f FILE` for a values mapping (written to a file: --set cannot express lists well)."""
    if not values:
        return []
    path = tmp / f"values-{len(list(tmp.glob('values-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return ["-f", str(path)]


HOOK_ANNOTATION = "helm.sh/hook"


def _is_hook(obj: Mapping[str, Any]) -> bool:
    return HOOK_ANNOTATION in (obj.get("metadata", {}).get("annotations") or {})


class Rendered:
    """The objects of one `helm template`, with lookups the tests need.

    `objects` are what the release installs; `hooks` what helm creates only for a hook
    (the `helm test` pod and its account, templates/tests/), kept apart as helm does."""

    def __init__(self, documents: Iterable[Mapping[str, Any] | None]) -> None:
        everything = [dict(d) for d in documents if d]
        self.objects: list[dict[str, Any]] = [o for o in everything if not _is_hook(o)]
        self.hooks: list[dict[str, Any]] = [o for o in everything if _is_hook(o)]

    @property
    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
        return found[0]

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        return self.one("ValidatingWebhookConfiguration")["webhooks"]

    @property
    def config(self) -> dict[str, Any]:
        """The server's config.yaml from the ConfigMap."""
        return yaml.safe_load(self.one("ConfigMap")["data"]["config.yaml"])

    @property
    def config_text(self) -> str:
        return self.one("ConfigMap")["data"]["config.yaml"]

    @property
    def container(self) -> dict[str, Any]:
        return self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]

    def routes(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(API group, resource, URL path, operations) of each rendered webhook."""
        routes = []
        for hook in self.webhooks:
            (rule,) = hook["rules"]
            (group,) = rule["apiGroups"]
            (resource,) = rule["resources"]
            client = hook["clientConfig"]
            path = client["service"]["path"] if "service" in client else _url_path(client["url"])
            routes.append((group, resource, path, tuple(rule["operations"])))
        return routes


def _url_path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def render(
    helm: Path,
    tmp: Path,
    values: Mapping[str, Any] | None = None,
    *,
    extra: Sequence[str] = (),
) -> Rendered:
    """`helm template` the chart as release RELEASE in NAMESPACE; raise ChartError on failure."""
    out = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        *values_args(values, tmp),
        *extra,
    )
    return Rendered(yaml.safe_load_all(out))
