"""The per-node check written for the tools a platform team would otherwise deploy.

Each function returns Kubernetes manifests (YAML text) holding the same check nodelimits
makes — "does one pod of this workload fit one node of its resource group" — as far as the
tool can express it, with the limits of ``examples/limits.yaml``:

* :func:`vap_manifests`: a ValidatingAdmissionPolicy (CEL) and its binding; the limits are
  its params, a ConfigMap (``paramKind``), one key per group and resource;
* :func:`gatekeeper_manifests`: a ConstraintTemplate (Rego) and its Constraint, the limits
  as the Constraint's parameters (static data: Gatekeeper reaches no platform API);
* :func:`kyverno_manifests`: a ClusterPolicy, the limits as a JMESPath-indexed context
  variable (static data as well).

What they all leave out (each named in docs/performance.md "Peer policies"): the platform
API (limits are frozen in the manifest), reserved memory, the rule that a sidecar counts only
for the init containers after it (CEL and the policies add every sidecar to the largest init
container: over-counting, never under-counting), the device-name rules beyond the one
card resource of each group, ``maxTime`` against ``activeDeadlineSeconds``, gang (Job
parallelism over ``nodeNumber``) and workload kinds other than Pod and Job.

The pod's effective request is Kubernetes' own rule (``resource.PodRequests``):
``max(sum(containers) + sum(sidecars), max(init) + sum(sidecars)) + overhead``, each
container's request of a resource being its request, else its limit (what the apiserver's
defaulting does for Pods, and what a Job's template means once its pods exist).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from devtools.controlplane import TestbinUnavailable, run_build_script
from devtools.examples import LIMITS_FILE
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.platform.static import load_limits_file

__all__ = [
    "GROUP_ANNOTATION",
    "POLICY_NAME",
    "built",
    "gatekeeper_manifests",
    "group_limits",
    "kyverno_manifests",
    "vap_manifests",
]

GROUP_ANNOTATION = "nodelimits.io/resource-group"
POLICY_NAME = "nodelimits-peer"
DEVICE = {
    AcceleratorType.GPU: "nvidia.com/gpu",
    AcceleratorType.DCU: "hygon.com/dcu",
    AcceleratorType.MLU: "cambricon.com/mlu",
    AcceleratorType.CPU: "",
}


PEERS_BUILD = Path(__file__).resolve().parents[1] / "tools" / "peers" / "build.sh"
GO_HINT = "install Go >= 1.26.6 (https://go.dev/dl/) and put `go` on PATH"


def built(peer: str) -> Path | None:
    """The cache directory of ``tools/peers/build.sh PEER`` (built on first use: tens of
    minutes cold); None, with the reason printed, when it cannot be had."""
    try:
        return run_build_script(PEERS_BUILD, GO_HINT, None, peer)
    except TestbinUnavailable as exc:
        print(f"# {peer}: not available: {exc}", flush=True)
        return None


def group_limits(limits_file: Path = LIMITS_FILE) -> dict[str, dict[str, Any]]:
    """Per group: ``cpu`` (cores), ``memory`` (bytes), ``device`` (resource name or "") and
    ``cards`` (per node, vendor cap applied), from a limits file."""
    out: dict[str, dict[str, Any]] = {}
    for entry in load_limits_file(limits_file).resourceGroups:
        out[entry.resourceGroup] = _one(entry)
    return out


def _one(entry: NodeLimits) -> dict[str, Any]:
    accelerator = entry.acceleratorType or AcceleratorType.CPU
    return {
        "cpu": entry.cpuNumber,
        "memory": int(Decimal(entry.memorySize) * 1024 * 1024),  # memorySize is MiB
        "device": DEVICE[accelerator],
        "cards": entry.card_cap(accelerator) if accelerator is not AcceleratorType.CPU else 0,
    }


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, width=1000)


# --- ValidatingAdmissionPolicy (CEL) ----------------------------------------------------------


def _cel_amount(resource: str) -> str:
    """One container's amount of ``resource`` (a CEL string expression) as a double."""
    res = "has(c.resources)"
    req = f"{res} && has(c.resources.requests) && {resource} in c.resources.requests"
    lim = f"{res} && has(c.resources.limits) && {resource} in c.resources.limits"
    return (
        f"(({req}) ? quantity(c.resources.requests[{resource}]).asApproximateFloat() : "
        f"(({lim}) ? quantity(c.resources.limits[{resource}]).asApproximateFloat() : 0.0))"
    )


def _cel_pod_request(resource: str) -> str:
    """The pod's effective request of ``resource`` (Kubernetes' rule, sidecars over-counted
    for init containers declared before them)."""
    amount = _cel_amount(resource)
    spec = "variables.spec"
    inits = f"(has({spec}.initContainers) ? {spec}.initContainers : [])"
    sidecar = "(has(c.restartPolicy) && c.restartPolicy == 'Always')"
    regular = f"([0.0] + {spec}.containers.map(c, {amount})).sum()"
    sidecars = f"([0.0] + {inits}.filter(c, {sidecar}).map(c, {amount})).sum()"
    biggest_init = f"([0.0] + {inits}.filter(c, !{sidecar}).map(c, {amount})).max()"
    overhead = (
        f"((has({spec}.overhead) && {resource} in {spec}.overhead) ? "
        f"quantity({spec}.overhead[{resource}]).asApproximateFloat() : 0.0)"
    )
    return f"[{regular} + {sidecars}, {biggest_init} + {sidecars}].max() + {overhead}"


def vap_params(limits: dict[str, dict[str, Any]], namespace: str) -> dict[str, Any]:
    """The params ConfigMap: ``<group>.cpu``, ``.memory``, ``.device``, ``.cards``."""
    data: dict[str, str] = {}
    for group, lim in limits.items():
        data.update(
            {
                f"{group}.cpu": str(lim["cpu"]),
                f"{group}.memory": str(lim["memory"]),
                f"{group}.device": lim["device"],
                f"{group}.cards": str(lim["cards"]),
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{POLICY_NAME}-limits", "namespace": namespace},
        "data": data,
    }


def vap_manifests(namespace: str, limits: dict[str, dict[str, Any]] | None = None) -> str:
    """The ConfigMap of limits, the ValidatingAdmissionPolicy and its binding (Pods, Jobs)."""
    limits = limits if limits is not None else group_limits()
    key = f"'{GROUP_ANNOTATION}'"
    p = "params.data"
    g = "variables.group"
    variables = [
        {
            "name": "spec",
            "expression": "object.kind == 'Pod' ? object.spec : object.spec.template.spec",
        },
        {
            "name": "group",
            "expression": (
                f"(object.kind != 'Pod' && has(object.spec.template.metadata) && "
                f"has(object.spec.template.metadata.annotations) && "
                f"{key} in object.spec.template.metadata.annotations) ? "
                f"object.spec.template.metadata.annotations[{key}] : "
                f"object.metadata.annotations[{key}]"
            ),
        },
        {"name": "known", "expression": f"({g} + '.cpu') in {p}"},
        {"name": "device", "expression": f"variables.known ? {p}[{g} + '.device'] : ''"},
        {"name": "cpu", "expression": _cel_pod_request("'cpu'")},
        {"name": "memory", "expression": _cel_pod_request("'memory'")},
        {
            "name": "cards",
            "expression": (
                f"variables.device == '' ? 0.0 : ({_cel_pod_request('variables.device')})"
            ),
        },
    ]
    validations = [
        {
            "expression": "variables.known",
            "messageExpression": f"'unknown resource group ' + {g}",
            "reason": "Forbidden",
        },
        {
            "expression": f"!variables.known || variables.cpu <= double({p}[{g} + '.cpu'])",
            "messageExpression": (
                f"'a pod asks ' + string(variables.cpu) + ' CPUs; one node of ' + {g} + "
                f"' has ' + {p}[{g} + '.cpu']"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": f"!variables.known || variables.memory <= double({p}[{g} + '.memory'])",
            "messageExpression": (
                f"'a pod asks ' + string(variables.memory) + ' bytes of memory; one node of ' "
                f"+ {g} + ' has ' + {p}[{g} + '.memory']"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": f"!variables.known || variables.cards <= double({p}[{g} + '.cards'])",
            "messageExpression": (
                f"'a pod asks ' + string(variables.cards) + ' ' + variables.device + "
                f"'; one node of ' + {g} + ' has ' + {p}[{g} + '.cards']"
            ),
            "reason": "Forbidden",
        },
    ]
    match = {
        "resourceRules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "operations": ["CREATE", "UPDATE"],
            },
            {
                "apiGroups": ["batch"],
                "apiVersions": ["v1"],
                "resources": ["jobs"],
                "operations": ["CREATE", "UPDATE"],
            },
        ]
    }
    has_group = (
        f"(has(object.metadata.annotations) && {key} in object.metadata.annotations) || "
        f"(object.kind != 'Pod' && has(object.spec.template.metadata) && "
        f"has(object.spec.template.metadata.annotations) && "
        f"{key} in object.spec.template.metadata.annotations)"
    )
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": match,
            "matchConditions": [{"name": "has-resource-group", "expression": has_group}],
            "variables": variables,
            "validations": validations,
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "policyName": POLICY_NAME,
            "validationActions": ["Deny"],
            "paramRef": {
                "name": f"{POLICY_NAME}-limits",
                "namespace": namespace,
                "parameterNotFoundAction": "Deny",
            },
        },
    }
    return _dump([vap_params(limits, namespace), policy, binding])


# --- Gatekeeper (Rego) ------------------------------------------------------------------------

REGO = r"""
package nodelimitspeer

# Rego v0: Gatekeeper's template target accepts no imports (not even rego.v1).

group_key := "nodelimits.io/resource-group"

obj := input.review.object

spec = s {
	obj.kind == "Pod"
	s := obj.spec
}

spec = s {
	obj.kind != "Pod"
	s := obj.spec.template.spec
}

group = g {
	obj.kind == "Pod"
	g := obj.metadata.annotations[group_key]
}

group = g {
	obj.kind != "Pod"
	g := obj.spec.template.metadata.annotations[group_key]
}

group = g {
	obj.kind != "Pod"
	not obj.spec.template.metadata.annotations[group_key]
	g := obj.metadata.annotations[group_key]
}

# Quantities to numbers: units.parse (an OPA built-in) reads "500m", "4Gi", "2"; a manifest
# read by gator may hold a bare number (the apiserver would have made it a string).
quantity(q) = n {
	n := units.parse(sprintf("%v", [q]))
}

amount(c, r) = n {
	n := quantity(c.resources.requests[r])
}

amount(c, r) = n {
	not c.resources.requests[r]
	n := quantity(c.resources.limits[r])
}

amount(c, r) = 0 {
	not c.resources.requests[r]
	not c.resources.limits[r]
}

inits = x {
	x := spec.initContainers
}

inits = [] {
	not spec.initContainers
}

is_sidecar(c) {
	c.restartPolicy == "Always"
}

overhead_of(r) = n {
	n := quantity(spec.overhead[r])
}

overhead_of(r) = 0 {
	not spec.overhead[r]
}

pod_request(r) = total {
	regular := sum([amount(c, r) | c := spec.containers[_]])
	sidecars := sum([amount(c, r) | c := inits[_]; is_sidecar(c)])
	init_amounts := [amount(c, r) | c := inits[_]; not is_sidecar(c)]
	biggest_init := max(array.concat([0], init_amounts))
	total := max([regular + sidecars, biggest_init + sidecars]) + overhead_of(r)
}

limits := input.parameters.groups[group]

violation[{"msg": msg}] {
	group
	not input.parameters.groups[group]
	msg := sprintf("unknown resource group %v", [group])
}

violation[{"msg": msg}] {
	asked := pod_request("cpu")
	asked > limits.cpu
	msg := sprintf("a pod asks %v CPUs; one node of %v has %v", [asked, group, limits.cpu])
}

violation[{"msg": msg}] {
	asked := pod_request("memory")
	asked > limits.memory
	msg := sprintf(
		"a pod asks %v bytes of memory; one node of %v has %v",
		[asked, group, limits.memory],
	)
}

violation[{"msg": msg}] {
	limits.device != ""
	asked := pod_request(limits.device)
	asked > limits.cards
	msg := sprintf(
		"a pod asks %v %v; one node of %v has %v",
		[asked, limits.device, group, limits.cards],
	)
}
"""


def gatekeeper_manifests(limits: dict[str, dict[str, Any]] | None = None) -> str:
    """A ConstraintTemplate (the Rego above) and its Constraint over Pods and Jobs."""
    limits = limits if limits is not None else group_limits()
    kind = "NodeLimitsPeer"
    template = {
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": kind.lower()},
        "spec": {
            "crd": {
                "spec": {
                    "names": {"kind": kind},
                    "validation": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            },
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "rego": REGO.lstrip()}],
        },
    }
    constraint = {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": kind,
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "enforcementAction": "deny",
            "match": {
                "kinds": [
                    {"apiGroups": [""], "kinds": ["Pod"]},
                    {"apiGroups": ["batch"], "kinds": ["Job"]},
                ]
            },
            "parameters": {"groups": limits},
        },
    }
    return _dump([template, constraint])


# --- Kyverno (JMESPath) -----------------------------------------------------------------------


def _jp_pod_request(spec: str, resource: str) -> str:
    """JMESPath: the pod's effective request of ``resource`` as a number (Kyverno's
    ``divide(quantity, '1')`` turns a quantity into one)."""
    # to_string: a manifest read by the CLI may hold a bare number (the apiserver would
    # send "5"), and divide() takes two quantities or two numbers, not one of each.
    either = f'resources.requests."{resource}" || resources.limits."{resource}" || \'0\''
    amount = f"divide(to_string({either}), '1')"
    regular = f"sum({spec}.containers[].[{amount}][])"
    sidecars = f"sum({spec}.initContainers[?restartPolicy=='Always'].[{amount}][] || [`0`])"
    biggest_init = f"max({spec}.initContainers[?restartPolicy!='Always'].[{amount}][] || [`0`])"
    overhead = f"divide(to_string({spec}.overhead.\"{resource}\" || '0'), '1')"
    return f"add(max([add({regular}, {sidecars}), add({biggest_init}, {sidecars})]), {overhead})"


def _kyverno_message(group: str, lim: dict[str, Any]) -> str:
    asked = "a pod asks {{ askedcpu }} CPUs, {{ askedmemory }} bytes of memory"
    has = f"one node of {group} has {lim['cpu']}, {lim['memory']}"
    if lim["device"]:
        asked += f", {{{{ askedcards }}}} {lim['device']}"
        has += f", {lim['cards']}"
    return f"{asked}; {has}"


def kyverno_manifests(limits: dict[str, dict[str, Any]] | None = None) -> str:
    """A ClusterPolicy over Pods and Jobs, the limits written into it: one rule per kind and
    group (JMESPath cannot index a table by a computed resource name), and one for a group
    that is not in the table."""
    limits = limits if limits is not None else group_limits()
    rules: list[dict[str, Any]] = []
    quoted = f'"{GROUP_ANNOTATION}"'
    for kind, spec, group in (
        ("Pod", "request.object.spec", f"request.object.metadata.annotations.{quoted} || ''"),
        (
            "Job",
            "request.object.spec.template.spec",
            f"request.object.spec.template.metadata.annotations.{quoted} || "
            f"request.object.metadata.annotations.{quoted} || ''",
        ),
    ):
        match = {"any": [{"resources": {"kinds": [kind], "operations": ["CREATE", "UPDATE"]}}]}
        rules.append(
            {
                "name": f"{kind.lower()}-known-group",
                "match": copy.deepcopy(match),
                "preconditions": {
                    "all": [{"key": f"{{{{ {group} }}}}", "operator": "NotEquals", "value": ""}]
                },
                "validate": {
                    "failureAction": "Enforce",
                    "message": f"unknown resource group {{{{ {group} }}}}",
                    "deny": {
                        "conditions": {
                            "all": [
                                {
                                    "key": f"{{{{ {group} }}}}",
                                    "operator": "AnyNotIn",
                                    "value": sorted(limits),
                                }
                            ]
                        }
                    },
                },
            }
        )
        for name, lim in limits.items():
            asked = {"cpu": _jp_pod_request(spec, "cpu"), "memory": _jp_pod_request(spec, "memory")}
            caps = {"cpu": lim["cpu"], "memory": lim["memory"]}
            if lim["device"]:
                asked["cards"] = _jp_pod_request(spec, lim["device"])
                caps["cards"] = lim["cards"]
            rules.append(
                {
                    "name": f"{kind.lower()}-fits-{name.lower()}",
                    "match": copy.deepcopy(match),
                    "preconditions": {
                        "all": [{"key": f"{{{{ {group} }}}}", "operator": "Equals", "value": name}]
                    },
                    "context": [
                        {"name": f"asked{key}", "variable": {"jmesPath": expression}}
                        for key, expression in asked.items()
                    ],
                    "validate": {
                        "failureAction": "Enforce",
                        "message": _kyverno_message(name, lim),
                        "deny": {
                            "conditions": {
                                "any": [
                                    {
                                        "key": f"{{{{ asked{key} }}}}",
                                        "operator": "GreaterThan",
                                        "value": cap,
                                    }
                                    for key, cap in caps.items()
                                ]
                            }
                        },
                    },
                }
            )
    policy = {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": POLICY_NAME},
        "spec": {"background": False, "admission": True, "rules": rules},
    }
    return _dump([policy])
