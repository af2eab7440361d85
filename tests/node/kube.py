"""Small helpers for tests on the real node: runnable objects, waits, verdicts.

The builders in devtools/builders.py make objects as users write them (images of a
registry that does not exist here); `runnable()` points every container at the local
busybox image and gives Deployments their selector, so the kubelet can run them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from devtools.nodeimages import BUSYBOX
from devtools.realnode import RealNode

WAIT = 90.0
"""Seconds any wait on the node may take before the test fails (no timing asserted)."""


def runnable(obj: dict[str, Any], *command: str, namespace: str | None = None) -> dict[str, Any]:
    """`obj` with busybox containers running `command` (default: sleep) and, for a workload,
    the selector and labels its controller needs."""
    spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    for c in spec["containers"]:
        c["image"] = BUSYBOX
        c["imagePullPolicy"] = "Never"
        c["command"] = list(command) or ["sleep", "3600"]
    spec["terminationGracePeriodSeconds"] = 1
    if namespace is not None:
        obj["metadata"]["namespace"] = namespace
    if obj["kind"] in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        labels = {"app": obj["metadata"]["name"]}
        obj["spec"]["selector"] = {"matchLabels": labels}
        obj["spec"]["template"]["metadata"]["labels"] = labels
    return obj


def apply(node: RealNode, obj: dict[str, Any]) -> Any:
    """`kubectl apply` of one object; the CompletedProcess (the test reads the verdict)."""
    return node.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)


def get(node: RealNode, *args: str) -> Any:
    return json.loads(node.kubectl("get", *args, "-o", "json").stdout)


def wait_until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def events(node: RealNode, namespace: str, name: str, reason: str) -> list[str]:
    """Messages of the events with `reason` about the object called `name`."""
    items = get(node, "events", "-n", namespace, f"--field-selector=involvedObject.name={name}")
    return [e.get("message", "") for e in items["items"] if e.get("reason") == reason]


def pods(node: RealNode, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["pods", "-n", namespace] + ([f"-l={selector}"] if selector else [])
    found: list[dict[str, Any]] = get(node, *args)["items"]
    return found


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
