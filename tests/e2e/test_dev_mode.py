"""`nodelimits serve --dev-webhook-url`: kopf registers (and removes) its own configuration."""

from __future__ import annotations

import json
import time
from pathlib import Path

from devtools.builders import container, pod
from devtools.controlplane import ControlPlane
from devtools.stack import SimulatorProcess, Webhook
from webhook.serve.handlers import HANDLERS

MANAGED = "nodelimits.dev.local"


def test_dev_mode_registers_a_working_configuration_and_cleans_it_up(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    simulator = SimulatorProcess(tmp_path).start()
    webhook = Webhook(tmp_path, control_plane, simulator)
    webhook.settings = {
        "server": {"manage_webhook_url": webhook.url, "ca_file": str(webhook.certs.ca)}
    }
    try:
        webhook.start()
        deadline = time.monotonic() + 30
        denied = ""
        obj = pod(container(cpu="999"))
        obj["metadata"]["namespace"] = namespace
        while time.monotonic() < deadline and "nodelimits:" not in denied:
            time.sleep(0.3)
            result = control_plane.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
            )
            denied = result.stderr
        assert f'admission webhook "pods.{MANAGED}" denied the request' in denied
        assert "cpu 999 > 40 cores per node" in denied
        hooks = json.loads(
            control_plane.kubectl(
                "get", "validatingwebhookconfiguration", MANAGED, "-o", "json"
            ).stdout
        )["webhooks"]
        # every handler, the kind table's too: kopf registers them whether or not their
        # CRDs are installed (a rule for a resource that does not exist matches nothing)
        assert {h["clientConfig"]["url"].removeprefix(webhook.url) for h in hooks} == {
            spec.path for spec in HANDLERS
        }
    finally:
        webhook.stop()
        simulator.stop()
    # kopf empties its managed configuration on a graceful exit: nothing is left to block pods.
    leftover = json.loads(
        control_plane.kubectl(
            "get", "validatingwebhookconfiguration", MANAGED, "-o", "json", check=False
        ).stdout
        or "{}"
    )
    assert not leftover.get("webhooks")
