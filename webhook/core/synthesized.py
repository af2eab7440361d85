"""Pod sets of kinds that hold no pod template: built the way their controllers build pods — pure.

* **Argo** (Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow): one pod per
  invocation of a template with ``container``, ``script`` or ``containerSet``; its
  containers are the main one(s) plus ``initContainers`` and ``sidecars``; the
  workflow's ``podSpecPatch`` and then the template's are merged over it (a JSON or YAML
  string; containers merge by name, as a strategic merge does). A patch that holds a
  ``{{...}}`` parameter cannot be read before run time: skipped, with a warning.
  ``resource``/``dag``/``steps``/``suspend``/``http``/``plugin``/``data`` templates
  create no user pod. The controller's own ``init``/``wait`` containers are not counted.
* **Spark** (SparkApplication, ScheduledSparkApplication): a driver and ``instances``
  executors (``dynamicAllocation.maxExecutors`` when dynamic allocation is on), each
  container asking what the operator computes: cpu = ``coreRequest`` or ``cores`` (1),
  limit ``coreLimit``; memory = ``memory`` + ``memoryOverhead`` (else max(memory x
  factor, 384 MiB), factor ``memoryOverheadFactor`` or 0.1 for JVM, 0.4 for Python/R)
  as request and limit; ``gpu.quantity`` of ``gpu.name``. ``driver.template`` /
  ``executor.template`` give the rest of the pod.
* **TrainJob**: its pods come from the referenced (Cluster)TrainingRuntime, which is not
  in the object: :mod:`webhook.core.trainjob` builds them from the runtime the caller read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import yaml

from webhook.core import kinds
from webhook.core.fields import (
    InvalidObject,
    optional_int,
    optional_list,
    optional_map,
    optional_str,
    type_name,
)

__all__ = ["argo", "spark"]

_MAX_PATCH = 256 * 1024


# --- Argo ---------------------------------------------------------------------------------


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge of the part of a PodSpec a patch can change: maps merge, lists
    of named objects (containers) merge by name, anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, Mapping) and isinstance(x.get("name"), str) for x in base + patch)
    ):
        out_list = [dict(x) for x in base]
        names = {x["name"]: i for i, x in enumerate(out_list)}
        for item in patch:
            if item["name"] in names:
                i = names[item["name"]]
                out_list[i] = _merge(out_list[i], item)
            else:
                out_list.append(dict(item))
        return out_list
    return patch


def _patch(spec: dict[str, Any], text: object, where: str, warnings: list[str]) -> dict[str, Any]:
    if text is None:
        return spec
    raw = optional_str(text, where)
    if raw is None or not raw.strip():
        return spec
    if "{{" in raw:
        warnings.append(f"{where} holds a parameter ({{{{...}}}}): what it patches is not checked")
        return spec
    if len(raw) > _MAX_PATCH:
        raise InvalidObject(where, f"longer than {_MAX_PATCH} characters")
    try:
        patch = json.loads(raw) if raw.lstrip().startswith("{") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidObject(where, f"not valid JSON or YAML: {first}") from None
    if not isinstance(patch, Mapping):
        raise InvalidObject(where, f"expected a PodSpec patch (an object), got {type_name(patch)}")
    merged = _merge(spec, patch)
    assert isinstance(merged, dict)
    return merged


def _containers(value: object, where: str) -> list[Any]:
    items = optional_list(value, where) or []
    for i, item in enumerate(items):
        if optional_map(item, f"{where}[{i}]") is None:
            raise InvalidObject(f"{where}[{i}]", "expected a container, got null")
    return list(items)


def argo(rule: kinds.KindRule, obj: Mapping[str, Any]) -> kinds.PodSets:
    root_field = rule.root
    root: Any = obj
    for step in root_field.split("."):
        root = optional_map(root, root_field) or {}
        root = root.get(step)
    root = optional_map(root, root_field) or {}
    warnings: list[str] = []
    templates = optional_list(root.get("templates"), f"{root_field}.templates") or []
    defaults = optional_map(root.get("templateDefaults"), f"{root_field}.templateDefaults") or {}
    pod_meta = optional_map(root.get("podMetadata"), f"{root_field}.podMetadata") or {}
    roles: list[kinds.Role] = []
    if len(templates) > kinds.MAX_ROLES:
        raise InvalidObject(f"{root_field}.templates", f"more than {kinds.MAX_ROLES} templates")
    for index, raw in enumerate(templates):
        where = f"{root_field}.templates[{index}]"
        template = optional_map(raw, where)
        if template is None:
            continue
        template = _merge(defaults, template) if defaults else template
        name = optional_str(template.get("name"), f"{where}.name") or str(index)
        single = next((k for k in ("container", "script") if template.get(k) is not None), None)
        if single is not None:  # the controller names it "main" (podSpecPatch merges by name)
            main = [{"name": "main", **(optional_map(template[single], f"{where}.{single}") or {})}]
        elif template.get("containerSet") is not None:
            cset = optional_map(template["containerSet"], f"{where}.containerSet") or {}
            main = _containers(cset.get("containers"), f"{where}.containerSet.containers")
        else:
            continue  # dag, steps, resource, suspend, http, ...: no user pod
        spec: dict[str, Any] = {
            "containers": [
                *main,
                *_containers(template.get("sidecars"), f"{where}.sidecars"),
            ],
            "initContainers": _containers(
                template.get("initContainers"), f"{where}.initContainers"
            ),
        }
        spec = _patch(spec, root.get("podSpecPatch"), f"{root_field}.podSpecPatch", warnings)
        spec = _patch(spec, template.get("podSpecPatch"), f"{where}.podSpecPatch", warnings)
        deadline = template.get("activeDeadlineSeconds")
        if isinstance(deadline, str) and deadline.isdigit() and len(deadline) < 12:
            deadline = int(deadline)
        elif isinstance(deadline, str):
            deadline = None  # a parameter: known at run time only
        deadline = optional_int(deadline, f"{where}.activeDeadlineSeconds")
        if deadline is not None:
            spec["activeDeadlineSeconds"] = deadline
        meta = optional_map(template.get("metadata"), f"{where}.metadata") or {}
        notes = _notes((pod_meta, f"{root_field}.podMetadata"), (meta, f"{where}.metadata"))
        roles.append(kinds.Role(f"template {name}", where, {"annotations": notes}, spec, 1))
    sets = kinds.finish(rule, obj, tuple(roles))
    return kinds.PodSets(**{**_fields(sets), "warnings": tuple(warnings)})


def _notes(*metadata: tuple[Mapping[str, Any], str]) -> dict[str, Any]:
    """The annotations of several metadata objects, later ones winning."""
    out: dict[str, Any] = {}
    for meta, where in metadata:
        out.update(optional_map(meta.get("annotations"), f"{where}.annotations") or {})
    return out


def _fields(sets: kinds.PodSets) -> dict[str, Any]:
    return {name: getattr(sets, name) for name in kinds.PodSets.__dataclass_fields__}


# --- Spark --------------------------------------------------------------------------------

_JVM_MEMORY = re.compile(r"([0-9]{1,15})([kmgtp]?)b?", re.IGNORECASE)
_JVM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_MIN_OVERHEAD = 384 << 20
_MIB = 1 << 20


def _jvm_bytes(value: object, where: str) -> int | None:
    """Spark's memory strings: ``512m``, ``4g`` (binary units; no unit = bytes... as Spark
    reads ``spark.driver.memory`` without a unit: MiB)."""
    text = optional_str(value, where)
    if text is None:
        return None
    match = _JVM_MEMORY.fullmatch(text.strip())
    if match is None:
        raise InvalidObject(where, f"expected a Spark memory size like 512m or 4g, got {text!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * (_JVM_UNITS[unit] if unit else _MIB)


def _factor(app: Mapping[str, Any], non_jvm: bool) -> Decimal:
    where = "spec.memoryOverheadFactor"
    text = optional_str(app.get("memoryOverheadFactor"), where)
    if not text:
        return Decimal("0.4" if non_jvm else "0.1")
    try:
        factor = Decimal(text)
    except ArithmeticError:
        raise InvalidObject(where, f"not a number: {text!r}") from None
    if not factor.is_finite() or factor < 0 or factor > 100:
        raise InvalidObject(where, f"out of range: {text!r}")
    return factor


def _spark_pod(
    app: Mapping[str, Any], part: str, where: str, non_jvm: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, pod spec) of the driver or an executor."""
    conf = optional_map(app.get(part), where) or {}
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    cores = optional_int(conf.get("cores"), f"{where}.cores")
    core_request = optional_str(conf.get("coreRequest"), f"{where}.coreRequest")
    requests["cpu"] = core_request if core_request is not None else str(cores or 1)
    core_limit = optional_str(conf.get("coreLimit"), f"{where}.coreLimit")
    if core_limit is not None:
        limits["cpu"] = core_limit
    memory = _jvm_bytes(conf.get("memory"), f"{where}.memory")
    if memory is not None:
        overhead = _jvm_bytes(conf.get("memoryOverhead"), f"{where}.memoryOverhead")
        if overhead is None:
            overhead = max(int(memory * _factor(app, non_jvm)), _MIN_OVERHEAD)
        requests["memory"] = limits["memory"] = str(memory + overhead)
    gpu = optional_map(conf.get("gpu"), f"{where}.gpu")
    if gpu is not None:
        name = optional_str(gpu.get("name"), f"{where}.gpu.name")
        quantity = optional_int(gpu.get("quantity"), f"{where}.gpu.quantity")
        if name and quantity:
            limits[name] = str(quantity)
    template = optional_map(conf.get("template"), f"{where}.template") or {}
    base_meta = optional_map(template.get("metadata"), f"{where}.template.metadata") or {}
    base = dict(optional_map(template.get("spec"), f"{where}.template.spec") or {})
    main_name = f"spark-kubernetes-{part}"
    main = {"name": main_name, "resources": {"requests": requests, "limits": limits}}
    others = [
        c
        for c in _containers(base.get("containers"), f"{where}.template.spec.containers")
        if c.get("name") != main_name
    ]
    base["containers"] = [main, *others, *_containers(conf.get("sidecars"), f"{where}.sidecars")]
    inits = _containers(conf.get("initContainers"), f"{where}.initContainers")
    if inits:
        base["initContainers"] = [*(base.get("initContainers") or []), *inits]
    notes = _notes((base_meta, f"{where}.template.metadata"), (conf, where))
    return {"annotations": notes}, base


def spark(rule: kinds.KindRule, obj: Mapping[str, Any]) -> kinds.PodSets:
    root_field = rule.root
    app: Any = obj
    for step in root_field.split("."):
        app = (optional_map(app, root_field) or {}).get(step)
    app = optional_map(app, root_field) or {}
    kind = optional_str(app.get("type"), f"{root_field}.type") or "Scala"
    non_jvm = kind in ("Python", "R")
    roles = []
    for part in ("driver", "executor"):
        where = f"{root_field}.{part}"
        meta, spec = _spark_pod(app, part, where, non_jvm)
        count = 1
        if part == "executor":
            conf = optional_map(app.get("executor"), where) or {}
            count = optional_int(conf.get("instances"), f"{where}.instances") or 1
            dyn_field = f"{root_field}.dynamicAllocation"
            dyn = optional_map(app.get("dynamicAllocation"), dyn_field) or {}
            if dyn.get("enabled") is True:
                most = optional_int(dyn.get("maxExecutors"), f"{dyn_field}.maxExecutors")
                count = most if most is not None else count
        roles.append(kinds.Role(part, where, meta, spec, count))
    return kinds.finish(rule, obj, tuple(roles))
