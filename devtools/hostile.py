"""Hypothesis strategies of hostile Kubernetes objects, shared by the hostile-input tests
(tests/unit/test_hostile.py through the core and the handler, tests/e2e/test_hostile_http.py
over HTTPS). Junk is possible at every level: wrong types, unicode, absurd quantities.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from devtools.builders import GROUP_KEY, TYPE_KEY

# Unicode everywhere: names, keys, values (surrogates excluded: JSON cannot carry them).
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=25,
)

ABSURD_QUANTITIES = [
    "1e1000", "-1", "NaN", "nan", "Infinity", "inf", "-Infinity", "1e-30", "99999999999Ei",
    "", " ", "1 ", " 1", "0x10", "1,5", "1.2.3", "1Ki1", "Mi", "m", "+", ".", "1e", "1e+",
    "١٢", "１", "1\n", "1\t", "\n1", "1e999999999999", "9" * 400, "0." + "0" * 400 + "1",
    "0." + "0" * 100 + "1", "1" * 40_000 + "x", "1" * 100_000, "1." + "1" * 40_000 + "e",
    "1Ei", "9Ei", "8Ei",
    "9223372036854775808", "9223372036854775807", "-0", "+0", "0.0000000001", "1E3",
    None, True, False, [], {}, [1], {"a": 1}, -1, -0.5, 1e1000, float("nan"), float("-inf"),
    1e-30, 1e300, 2**63, 2**64, 10**100, 0.1, 0,
]  # fmt: skip
quantities = (
    st.sampled_from(ABSURD_QUANTITIES)
    | text
    | st.integers()
    | st.floats()
    | st.from_regex(r"\A[+-]?\d{0,25}(\.\d{0,12})?([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d{1,4})?\Z")
    | json_values
    # Long digit runs ending well or badly: the quadratic backtracking of issue 12, finding 1.
    | st.builds(str.__add__, st.builds(str.__mul__, st.sampled_from("19."), st.integers(0, 50_000)),
                st.sampled_from(["", "x", ".", "e", "e+", "Ki", "Kix", "1.1", " "]))
)  # fmt: skip
RESOURCE_NAMES = [
    "cpu", "memory", "nvidia.com/gpu", "nvidia.com/gpumem", "nvidia.com/mig-1g.5gb",
    "hygon.com/dcu", "hygon.com/dcumem", "cambricon.com/mlu", "cambricon.com/mlu370",
    "cambricon.com/vmlu", "cambricon.com/mlu370.smlu.vcore", "hugepages-2Mi",
    "ephemeral-storage", "example.com/foo", "kubernetes.io/x", "CPU", "Memory",
    "NVIDIA.com/GPU", "nvidia.com/gpu ", "", "ǹvidia.com/gpu", "nvidia.com/gpu\u200b",
]  # fmt: skip
resource_names = st.sampled_from(RESOURCE_NAMES) | text


def maybe_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The value, or (1 in ~6) any JSON value at all: wrong types at every level."""
    return st.one_of(strategy, strategy, strategy, strategy, strategy, json_values)


resource_map = maybe_junk(st.dictionaries(resource_names, quantities, max_size=5))
hostile_container = maybe_junk(
    st.fixed_dictionaries(
        {},
        optional={
            "name": maybe_junk(text),
            "image": maybe_junk(text),
            "resources": maybe_junk(
                st.fixed_dictionaries(
                    {}, optional={"requests": resource_map, "limits": resource_map}
                )
            ),
            "restartPolicy": maybe_junk(st.sampled_from(["Always", "Never", "always", ""])),
        },
    )
)
annotation_keys = (
    st.sampled_from([GROUP_KEY, TYPE_KEY, GROUP_KEY.upper(), "NodeLimits.io/Resource-Group", "x/y"])
    | text
)
annotation_values = st.sampled_from(["TeslaM40", "gpu", "dcu", "GPU", "", " TeslaM40 "]) | text
hostile_annotations = maybe_junk(
    st.dictionaries(annotation_keys, maybe_junk(annotation_values), max_size=5)
)
hostile_metadata = maybe_junk(
    st.fixed_dictionaries(
        {},
        optional={
            "name": maybe_junk(text),
            "generateName": maybe_junk(text),
            "namespace": maybe_junk(text),
            "annotations": hostile_annotations,
            "labels": json_values,
            "ownerReferences": maybe_junk(
                st.lists(st.fixed_dictionaries({"kind": maybe_junk(text)}), max_size=2)
            ),
            "uid": json_values,
        },
    )
)
counts = maybe_junk(st.integers(min_value=-5, max_value=2**70))
hostile_pod_spec = maybe_junk(
    st.fixed_dictionaries(
        {},
        optional={
            "containers": maybe_junk(st.lists(hostile_container, max_size=4)),
            "initContainers": maybe_junk(st.lists(hostile_container, max_size=3)),
            "resources": maybe_junk(
                st.fixed_dictionaries(
                    {}, optional={"requests": resource_map, "limits": resource_map}
                )
            ),
            "overhead": resource_map,
            "activeDeadlineSeconds": counts,
            "ephemeralContainers": json_values,
        },
    )
)
hostile_template = maybe_junk(
    st.fixed_dictionaries({}, optional={"metadata": hostile_metadata, "spec": hostile_pod_spec})
)
KINDS = ["Pod", "Job", "CronJob", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
         "ReplicationController", "PodTemplate", "ConfigMap", "", "pod", "PodList"]  # fmt: skip


@st.composite
def hostile_objects(draw: st.DrawFn) -> Any:
    """A Kubernetes-shaped object of any kind, with junk possible at every level."""
    kind = draw(maybe_junk(st.sampled_from(KINDS)))
    job_spec = st.fixed_dictionaries(
        {},
        optional={
            "template": hostile_template,
            "parallelism": counts,
            "completions": counts,
            "activeDeadlineSeconds": counts,
            "suspend": json_values,
        },
    )
    spec: Any
    if kind == "Pod":
        spec = draw(hostile_pod_spec)
    elif kind == "CronJob":
        spec = draw(
            maybe_junk(
                st.fixed_dictionaries(
                    {
                        "jobTemplate": maybe_junk(
                            st.fixed_dictionaries({"spec": maybe_junk(job_spec)})
                        )
                    }
                )
            )
        )
    elif kind == "Job":
        spec = draw(maybe_junk(job_spec))
    else:
        spec = draw(
            maybe_junk(st.fixed_dictionaries({"template": hostile_template, "replicas": counts}))
        )
    obj: dict[str, Any] = {
        "apiVersion": draw(maybe_junk(st.sampled_from(["v1", "batch/v1", "apps/v1"]))),
        "kind": kind,
        "metadata": draw(hostile_metadata),
        "spec": spec,
    }
    if kind == "PodTemplate":
        obj["template"] = draw(hostile_template)
    for key in draw(st.lists(text, max_size=2)):
        obj.setdefault(key, draw(json_values))
    for key in draw(
        st.lists(st.sampled_from(["kind", "metadata", "spec", "apiVersion"]), max_size=1)
    ):
        del obj[key]
    return draw(st.one_of(st.just(obj), st.just(obj), st.just(obj), json_values))


# --- oversized pods with junk around them ---------------------------------------------

SEMANTIC_SPEC_KEYS = {
    "containers",
    "initContainers",
    "resources",
    "overhead",
    "activeDeadlineSeconds",
}
SEMANTIC_CONTAINER_KEYS = {"resources", "restartPolicy"}
junk_dict = st.dictionaries(text, json_values, max_size=4)


def not_ours(key: str) -> bool:
    return key.lower() not in (GROUP_KEY, TYPE_KEY)


@st.composite
def oversized_pods(draw: st.DrawFn) -> dict[str, Any]:
    """A pod that does not fit TeslaM40 (40 cores, 31888Mi, 2 cards), then junk around it."""
    over = draw(
        st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "cpu-limit", "init", "sidecars"])
    )
    main: dict[str, Any] = {"name": "main", "image": "x", "resources": {"requests": {"cpu": "1"}}}
    init: list[dict[str, Any]] = []
    if over == "cpu":
        main["resources"]["requests"]["cpu"] = f"{draw(st.integers(40001, 10**9))}m"
    elif over == "memory":
        main["resources"]["requests"]["memory"] = f"{draw(st.integers(31889, 10**9))}Mi"
    elif over == "nvidia.com/gpu":
        main["resources"]["limits"] = {"nvidia.com/gpu": draw(st.integers(3, 10**6))}
    elif over == "cpu-limit":
        # a limit alone: the request defaults to it (the apiserver's rule, and nodelimits'),
        # and the request decides; a limit over a fitting request only warns (issue 11)
        main["resources"] = {"limits": {"cpu": str(draw(st.integers(41, 10**6)))}}
    elif over == "init":
        init = [{"name": "i", "resources": {"requests": {"cpu": "41"}}}]
    else:  # two sidecars of 20 cores + the app's 1 core: 41 > 40
        init = [
            {"name": f"s{i}", "restartPolicy": "Always", "resources": {"requests": {"cpu": "20"}}}
            for i in range(2)
        ]
    for key, value in draw(junk_dict).items():
        if key not in SEMANTIC_CONTAINER_KEYS:
            main.setdefault(key, value)
    spec: dict[str, Any] = {"containers": [main]}
    if init:
        spec["initContainers"] = init
    # Extra junk containers that ask for nothing (or are wrong-typed: then the object is invalid).
    spec["containers"] += draw(
        st.lists(st.fixed_dictionaries({"name": text, "image": text}), max_size=3)
    )
    for key, value in draw(junk_dict).items():
        if key not in SEMANTIC_SPEC_KEYS:
            spec.setdefault(key, value)
    notes = {
        k: v
        for k, v in draw(st.dictionaries(text, maybe_junk(text), max_size=5)).items()
        if not_ours(k)
    }
    notes[GROUP_KEY] = "TeslaM40"
    meta: dict[str, Any] = {"name": draw(text) or "p", "namespace": "team-a", "annotations": notes}
    for key, value in draw(junk_dict).items():
        if key not in ("annotations", "name", "namespace", "generateName"):
            meta.setdefault(key, value)
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    for key, value in draw(junk_dict).items():
        if key not in ("kind", "metadata", "spec", "apiVersion"):
            obj.setdefault(key, value)
    return obj


def as_job(pod_obj: dict[str, Any]) -> dict[str, Any]:
    meta = pod_obj["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": meta["name"], "namespace": "team-a", "labels": {"junk": "1"}},
        "spec": {"template": {"metadata": meta, "spec": pod_obj["spec"]}, "backoffLimit": 0},
    }
