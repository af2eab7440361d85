"""The `helm test` hook (templates/tests/denial.yaml): a pod of the nodelimits image runs
files/helm-test.py, which dry-runs an oversized pod in test.namespace and passes only on a
nodelimits denial. Rendered here; run against the real apiserver in
tests/e2e/test_chart_server.py, and by `helm test` on the real node in tests/node."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.chart.chart import CHART, NAMESPACE, ChartError, Rendered
from tests.chart.conftest import RenderFn

HOOK = "helm.sh/hook"
K8S_VERSION = "1.37"


def hook(rendered: Rendered, kind: str) -> dict[str, Any]:
    (found,) = [o for o in rendered.hooks if o["kind"] == kind]
    return found


def hook_pod(rendered: Rendered) -> dict[str, Any]:
    return hook(rendered, "Pod")


def env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_every_test_object_is_a_test_hook_deleted_once_passed(render_chart: RenderFn) -> None:
    found = render_chart().hooks

    assert sorted(o["kind"] for o in found) == ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    for obj in found:
        annotations = obj["metadata"]["annotations"]
        assert annotations[HOOK] == "test"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_the_pod_runs_the_chart_script_in_the_nodelimits_image(render_chart: RenderFn) -> None:
    rendered = render_chart({"image": {"tag": "1.2.3"}})
    (container,) = hook_pod(rendered)["spec"]["containers"]

    assert container["image"] == "ghcr.io/nodelimits/nodelimits:1.2.3"
    assert container["command"] == ["python", "-c", (CHART / "files" / "helm-test.py").read_text()]
    assert hook_pod(rendered)["spec"]["restartPolicy"] == "Never"


def test_the_pod_is_as_restricted_as_the_webhook(render_chart: RenderFn) -> None:
    rendered = render_chart()
    pod = hook_pod(rendered)["spec"]

    assert (
        pod["securityContext"]
        == rendered.one("Deployment")["spec"]["template"]["spec"]["securityContext"]
    )
    assert pod["containers"][0]["securityContext"] == rendered.container["securityContext"]


def test_its_account_may_only_create_pods_in_the_test_namespace(render_chart: RenderFn) -> None:
    rendered = render_chart({"test": {"namespace": "ml-team"}})
    role, binding = hook(rendered, "Role"), hook(rendered, "RoleBinding")
    account = hook(rendered, "ServiceAccount")

    assert role["metadata"]["namespace"] == "ml-team"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
    assert binding["metadata"]["namespace"] == "ml-team"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert hook_pod(rendered)["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert not {"ClusterRole", "ClusterRoleBinding"} & {o["kind"] for o in rendered.hooks}


@pytest.mark.parametrize(
    ("values", "group"),
    [
        pytest.param({"test": {"group": "TeslaM40"}}, "TeslaM40", id="test-group"),
        pytest.param(
            {"config": {"policy": {"default_group": "ORISE"}}}, "ORISE", id="default-group"
        ),
        pytest.param({}, "nodelimits-helm-test", id="made-up"),
    ],
)
def test_the_oversized_pod_names_the_group(
    render_chart: RenderFn, values: dict[str, Any], group: str
) -> None:
    assert env(hook_pod(render_chart(values)))["NODELIMITS_TEST_GROUP"] == group


def test_the_oversized_pod_carries_the_configured_group_annotation(render_chart: RenderFn) -> None:
    values = {"config": {"policy": {"group_annotation": "example.com/queue"}}}

    assert env(hook_pod(render_chart(values)))["NODELIMITS_TEST_ANNOTATION"] == "example.com/queue"


@pytest.mark.parametrize(
    "namespace",
    [
        pytest.param("kube-system", id="kube-system"),
        pytest.param(NAMESPACE, id="release-namespace"),
        pytest.param("batch", id="excluded"),
    ],
)
def test_a_test_namespace_the_webhook_never_sees_is_refused(
    render_chart: RenderFn, namespace: str
) -> None:
    values = {"test": {"namespace": namespace}, "webhook": {"excludeNamespaces": ["batch"]}}

    with pytest.raises(
        ChartError, match=f"test.namespace \\({namespace}\\) never reaches the webhook"
    ):
        render_chart(values)


def test_disabled_renders_no_test(render_chart: RenderFn) -> None:
    assert render_chart({"test": {"enabled": False}}).hooks == []


def test_out_of_cluster_renders_no_test(render_chart: RenderFn) -> None:
    assert render_chart({"webhook": {"url": "https://127.0.0.1:9443"}}).hooks == []


def test_every_test_object_is_valid_kubernetes(render_chart: RenderFn) -> None:
    for obj in render_chart({"commonLabels": {"team": "platform"}}).hooks:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_script_is_valid_python_with_only_the_standard_library() -> None:
    source = (CHART / "files" / "helm-test.py").read_text()
    compile(source, "helm-test.py", "exec")
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {"json", "os", "re", "ssl", "sys", "urllib"}
