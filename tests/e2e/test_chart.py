"""charts/nodelimits against the real kube-apiserver: `helm install`, `upgrade` and
`uninstall` (`--no-hooks`, no `--wait`: there are no controllers or nodes), with the
built-in certificates kept across upgrades (helm `lookup`) and renewed when due.

The apiserver also validates what `helm template` cannot: the CEL matchConditions compile,
the webhook names are unique, and the service account can be issued a token."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.chart.chart import CHART
from webhook.serve.handlers import HANDLERS


def get(plane: ControlPlane, *args: str) -> dict[str, Any]:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def exists(plane: ControlPlane, *args: str) -> bool:
    result = plane.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    return bool(result.stdout.strip())


@pytest.fixture
def release(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    """A unique release name; uninstalled at the end so its (cluster-scoped, Fail) webhook
    configuration never outlives the test."""
    name = f"nl-{secrets.token_hex(3)}"
    yield name
    control_plane.helm("uninstall", name, "-n", namespace, "--no-hooks", check=False)


def install(plane: ControlPlane, release: str, namespace: str, *args: str, upgrade=False) -> str:
    verb = ("upgrade",) if upgrade else ("install",)
    return plane.helm(*verb, release, str(CHART), "-n", namespace, "--no-hooks", *args).stdout


def certificates(plane: ControlPlane, release: str, namespace: str) -> dict[str, str]:
    ca = get(plane, "secret", f"{release}-nodelimits-ca", "-n", namespace)["data"]
    tls = get(plane, "secret", f"{release}-nodelimits-tls", "-n", namespace)["data"]
    vwc = get(plane, "validatingwebhookconfiguration", f"{release}-nodelimits")
    bundles = {hook["clientConfig"]["caBundle"] for hook in vwc["webhooks"]}
    assert len(bundles) == 1
    return {
        "ca": ca["tls.crt"],
        "ca_key": ca["tls.key"],
        "leaf": tls["tls.crt"],
        "leaf_ca": tls["ca.crt"],
        "bundle": bundles.pop(),
    }


def test_install_creates_every_object_and_prints_how_to_check(
    control_plane: ControlPlane, namespace: str, release: str
) -> None:
    notes = install(control_plane, release, namespace)
    name = f"{release}-nodelimits"
    for kind in ("deployment", "service", "serviceaccount", "configmap", "poddisruptionbudget"):
        assert exists(control_plane, kind, name, "-n", namespace), kind
    vwc = get(control_plane, "validatingwebhookconfiguration", name)
    # Every kind is enabled by default: one webhook per handler, in the server's order.
    assert [h["clientConfig"]["service"]["path"] for h in vwc["webhooks"]] == [
        h.path for h in HANDLERS
    ]
    assert all(h["matchConditions"] for h in vwc["webhooks"])  # accepted: the CEL compiled
    assert f"kubectl -n {namespace} rollout status deployment/{name}" in notes
    assert "--dry-run=server" in notes


def test_default_certificates_are_the_servers_to_issue(
    control_plane: ControlPlane, namespace: str, release: str
) -> None:
    """certificates.mode selfManaged: an empty Secret for the server to fill, no caBundle
    yet (tests/e2e/test_selfcerts_online.py runs the server against it)."""
    install(control_plane, release, namespace)
    name = f"{release}-nodelimits"
    assert "data" not in get(control_plane, "secret", f"{name}-certs", "-n", namespace)
    for secret in (f"{name}-ca", f"{name}-tls"):
        assert not exists(control_plane, "secret", secret, "-n", namespace)
    vwc = get(control_plane, "validatingwebhookconfiguration", name)
    assert all("caBundle" not in h["clientConfig"] for h in vwc["webhooks"])


BUILTIN = ("--set", "certificates.mode=builtin")
"""Not the default (selfManaged, tests/e2e/test_selfcerts_online.py)."""


def test_builtin_certificates_survive_an_upgrade_unchanged(
    control_plane: ControlPlane, namespace: str, release: str
) -> None:
    install(control_plane, release, namespace, *BUILTIN)
    before = certificates(control_plane, release, namespace)
    assert base64.b64decode(before["bundle"]) == base64.b64decode(before["ca"])
    install(
        control_plane, release, namespace, *BUILTIN, "--set", "webhook.failurePolicy=Ignore",
        upgrade=True,
    )  # fmt: skip
    assert certificates(control_plane, release, namespace) == before
    vwc = get(control_plane, "validatingwebhookconfiguration", f"{release}-nodelimits")
    assert {h["failurePolicy"] for h in vwc["webhooks"]} == {"Ignore"}


def test_upgrade_renews_a_serving_certificate_due_for_renewal_keeping_the_ca(
    control_plane: ControlPlane, namespace: str, release: str
) -> None:
    due = (*BUILTIN, "--set", "certificates.builtin.certValidityDays=30")  # < renewBefore (60)
    install(control_plane, release, namespace, *due)
    before = certificates(control_plane, release, namespace)
    install(control_plane, release, namespace, *due, upgrade=True)
    after = certificates(control_plane, release, namespace)
    assert after["leaf"] != before["leaf"]
    assert (after["ca"], after["ca_key"], after["bundle"]) == (
        before["ca"],
        before["ca_key"],
        before["bundle"],
    )


@pytest.mark.parametrize(
    ("mode", "suffixes"), [("selfManaged", ("certs",)), ("builtin", ("ca", "tls"))]
)
def test_uninstall_removes_the_webhook_configuration_and_secrets(
    control_plane: ControlPlane, namespace: str, release: str, mode: str, suffixes: tuple[str, ...]
) -> None:
    install(control_plane, release, namespace, "--set", f"certificates.mode={mode}")
    name = f"{release}-nodelimits"
    for secret in suffixes:
        assert exists(control_plane, "secret", f"{name}-{secret}", "-n", namespace)
    control_plane.helm("uninstall", release, "-n", namespace, "--no-hooks")
    assert not exists(control_plane, "validatingwebhookconfiguration", name)
    for secret in suffixes:
        assert not exists(control_plane, "secret", f"{name}-{secret}", "-n", namespace)
    assert not exists(control_plane, "deployment", name, "-n", namespace)


def test_chart_service_account_gets_resource_claims_and_no_more_of_dra(
    control_plane: ControlPlane, namespace: str, release: str
) -> None:
    """Minimal: of Kubernetes' objects the chart grants get on resource claims (DRA, issue
    11) and, by name, only its own. (Sufficient: tests/e2e/test_chart_server.py.)"""
    install(control_plane, release, namespace)
    user = f"system:serviceaccount:{namespace}:{release}-nodelimits"
    nobody = f"system:serviceaccount:{namespace}:nobody-{secrets.token_hex(3)}"

    def rules(who: str) -> set[tuple[str, ...]]:
        out = control_plane.kubectl(
            "auth", "can-i", "--list", "-n", namespace, f"--as={who}"
        ).stdout
        return {tuple(line.split()) for line in out.splitlines()[1:] if line.strip()}

    # The defaults of any authenticated service account, plus get on the objects a
    # workload names (DRA's claims, issue 11; a TrainJob's runtime, issue 15) and nothing
    # else on every name: the rest (certificate self-management) is by resourceNames.
    granted = rules(user) - rules(nobody)
    assert {g for g in granted if g[2] == "[]"} == {
        ("resourceclaims.resource.k8s.io", "[]", "[]", "[get]"),
        ("resourceclaimtemplates.resource.k8s.io", "[]", "[]", "[get]"),
        ("clustertrainingruntimes.trainer.kubeflow.org", "[]", "[]", "[get]"),
        ("trainingruntimes.trainer.kubeflow.org", "[]", "[]", "[get]"),
    }
    assert rules(nobody) <= rules(user)
    for verb, resource in [("list", "pods"), ("get", "secrets"), ("create", "events"),
                           ("patch", "validatingwebhookconfigurations"),
                           ("list", "resourceclaimtemplates.resource.k8s.io"),
                           ("list", "trainingruntimes.trainer.kubeflow.org"),
                           ("get", "deviceclasses.resource.k8s.io")]:  # fmt: skip
        result = control_plane.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False
        )
        assert result.stdout.strip() == "no", (verb, resource)
