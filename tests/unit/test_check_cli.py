"""`nodelimits check`: the CLI and JSON contract CI pipelines rely on (DESIGN.md)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from devtools.builders import container, job, limits_entry, pod
from webhook.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def limits_file(tmp_path: Path) -> Path:
    path = tmp_path / "limits.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "resourceGroups": [
                    limits_entry(),
                    limits_entry("kshd", accelerator="dcu", cards=4, max_time="24:00:00"),
                ]
            }
        )
    )
    return path


def write(tmp_path: Path, name: str, *docs: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


def check(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["check", *args], input=stdin)


def check_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = check(*args, "--output", "json")
    return result.exit_code, json.loads(result.stdout)


def test_everything_fits_exits_0(tmp_path: Path, limits_file: Path) -> None:
    path = write(tmp_path, "ok.yaml", pod(container(cpu="4", gpu=1)))
    result = check("-f", str(path), "--limits-file", str(limits_file))
    assert result.exit_code == 0, result.output
    assert "ALLOWED" in result.stdout


def test_a_rejected_object_exits_1_with_the_message(tmp_path: Path, limits_file: Path) -> None:
    path = write(tmp_path, "big.yaml", job(container(gpu=4)))
    code, report = check_json("-f", str(path), "--limits-file", str(limits_file))
    assert code == 1
    (result,) = report["results"]
    assert result["message"] == (
        'nodelimits: Job team-a/train does not fit one node of resource group "TeslaM40" '
        "(gpu): nvidia.com/gpu 4 > 2 cards per node"
    )


def test_json_results_follow_the_contract(tmp_path: Path, limits_file: Path) -> None:
    path = write(tmp_path, "big.yaml", job(container(gpu=4)))
    _, report = check_json("-f", str(path), "--limits-file", str(limits_file))
    (result,) = report["results"]
    assert {
        k: result[k]
        for k in (
            "apiVersion",
            "kind",
            "namespace",
            "name",
            "resourceGroup",
            "acceleratorType",
            "allowed",
            "skipped",
        )
    } == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "namespace": "team-a",
        "name": "train",
        "resourceGroup": "TeslaM40",
        "acceleratorType": "gpu",
        "allowed": False,
        "skipped": False,
    }
    assert result["violations"] == [
        {
            "resource": "nvidia.com/gpu",
            "requested": "4",
            "allowed": "2",
            "unit": "cards",
            "message": "nvidia.com/gpu 4 > 2 cards per node",
        }
    ]
    assert result["warnings"] == []
    assert report["summary"] == {
        "objects": 1,
        "checked": 1,
        "allowed": 0,
        "rejected": 1,
        "skipped": 0,
        "errors": 0,
    }


def test_unannotated_objects_are_skipped_and_allowed(tmp_path: Path, limits_file: Path) -> None:
    path = write(tmp_path, "plain.yaml", pod(container(cpu="999"), group=None))
    code, report = check_json("-f", str(path), "--limits-file", str(limits_file))
    assert code == 0
    assert report["results"][0]["skipped"] is True
    assert report["summary"]["skipped"] == 1


def test_resource_group_option_checks_unannotated_objects(
    tmp_path: Path, limits_file: Path
) -> None:
    path = write(tmp_path, "plain.yaml", pod(container(cpu="999"), group=None))
    code, _ = check_json(
        "-f", str(path), "--limits-file", str(limits_file), "--resource-group", "TeslaM40"
    )
    assert code == 1


def test_directories_are_walked_recursively_for_manifest_suffixes(
    tmp_path: Path, limits_file: Path
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    write(tmp_path / "a", "one.yaml", pod(name="one"))
    write(tmp_path / "a" / "b", "two.yml", pod(name="two"))
    (tmp_path / "a" / "b" / "three.json").write_text(json.dumps(pod(name="three")))
    (tmp_path / "a" / "notes.txt").write_text("not a manifest")
    _, report = check_json("-f", str(tmp_path / "a"), "--limits-file", str(limits_file))
    assert sorted(r["name"] for r in report["results"]) == ["one", "three", "two"]


def test_stdin_is_read_with_dash(limits_file: Path) -> None:
    result = check(
        "-f",
        "-",
        "--limits-file",
        str(limits_file),
        "-o",
        "json",
        stdin=yaml.safe_dump(pod(container(cpu="41"))),
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["results"][0]["allowed"] is False


def test_lists_are_expanded(tmp_path: Path, limits_file: Path) -> None:
    path = write(
        tmp_path,
        "list.yaml",
        {"apiVersion": "v1", "kind": "List", "items": [pod(name="a"), pod(name="b")]},
    )
    _, report = check_json("-f", str(path), "--limits-file", str(limits_file))
    assert [r["name"] for r in report["results"]] == ["a", "b"]


def test_unknown_group_is_a_rejection_naming_it(tmp_path: Path, limits_file: Path) -> None:
    path = write(tmp_path, "x.yaml", pod(group="Nope"))
    code, report = check_json("-f", str(path), "--limits-file", str(limits_file))
    assert code == 1
    assert 'resource group "Nope" is unknown' in report["results"][0]["message"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("kind: Pod\nmetadata: {name: [\n", "document 1: invalid YAML", id="yaml"),
        pytest.param(
            "- just\n- a list\n", "document 1: <document>: expected an object", id="not-an-object"
        ),
        pytest.param(
            yaml.safe_dump(pod(container(limits={"cpu": "1e1000"}))),
            "document 1 (Pod team-a/p): spec.containers[0].resources.limits.cpu: invalid "
            "quantity '1e1000': absurdly large",
            id="absurd-quantity",
        ),
        pytest.param(
            yaml.safe_dump(pod(container(limits={"memory": "-1"}))),
            "spec.containers[0].resources.limits.memory: invalid quantity '-1': must not be "
            "negative",
            id="negative",
        ),
        pytest.param(
            yaml.safe_dump(pod(container(limits={"cpu": "1.5.5"}))),
            "invalid quantity '1.5.5': not a Kubernetes quantity",
            id="two-dots",
        ),
        pytest.param(
            yaml.safe_dump(pod(container(limits={"cpu": "abc"}))),
            "invalid quantity 'abc'",
            id="letters",
        ),
        pytest.param(
            yaml.safe_dump(pod(container(limits={"nvidia.com/gpu": 0.5}))),
            "nvidia.com/gpu: invalid quantity '0.5': extended resources must be whole numbers",
            id="half-a-gpu",
        ),
    ],
)
def test_bad_input_exits_2_naming_file_document_and_field(
    tmp_path: Path, limits_file: Path, content: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = check("-f", str(path), "--limits-file", str(limits_file))
    assert result.exit_code == 2
    assert f"error: {path}: " in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_document_does_not_hide_the_others(tmp_path: Path, limits_file: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        yaml.safe_dump(pod(container(limits={"cpu": "abc"}), name="bad"))
        + "---\n"
        + yaml.safe_dump(pod(container(cpu="41"), name="big"))
    )
    result = check("-f", str(path), "--limits-file", str(limits_file), "-o", "json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["results"][0]["name"] == "big"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            {"cpuNumber": "forty"}, "resourceGroups[0] (TeslaM40).cpuNumber", id="wrong-type"
        ),
        pytest.param({"maxTime": "soon"}, "resourceGroups[0] (TeslaM40).maxTime", id="max-time"),
        pytest.param({"memorySize": None}, "resourceGroups[0] (TeslaM40).memorySize", id="missing"),
    ],
)
def test_bad_limits_file_exits_2_naming_the_field(
    tmp_path: Path, entry: dict[str, Any], expected: str
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(yaml.safe_dump({"resourceGroups": [limits_entry() | entry]}))
    manifest = write(tmp_path, "p.yaml", pod())
    result = check("-f", str(manifest), "--limits-file", str(limits))
    assert result.exit_code == 2
    assert f"error: {limits}: {expected}" in result.stderr


def test_missing_path_exits_2(limits_file: Path) -> None:
    result = check("-f", "/no/such/dir", "--limits-file", str(limits_file))
    assert result.exit_code == 2
    assert "error: /no/such/dir: no such file or directory" in result.stderr


def test_limits_source_must_be_given_exactly_once(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", pod())
    result = check("-f", str(path))
    assert result.exit_code == 2
    assert "give exactly one of --limits-file FILE or --live" in result.stderr


def test_examples_give_the_documented_verdicts() -> None:
    code, report = check_json(
        "-f", str(EXAMPLES / "manifests"), "--limits-file", str(EXAMPLES / "limits.yaml")
    )
    assert code == 1
    rejected = {r["name"] for r in report["results"] if not r["allowed"]}
    named = {r["name"] for r in report["results"]}
    # Every workload kind has a "...-fits" and an oversized example (issue 15).
    oversized = {n for n in named if "too-big" in n} - {"app-with-sidecars-too-big"}
    assert len(oversized) >= 22
    assert rejected == {
        "llm-finetune",
        "llm-serve",
        "mlu-benchmark",
        "app-with-sidecars-too-big",
        *oversized,
    }
    assert not any(r["skipped"] for r in report["results"] if r["name"].endswith("-fits"))


def test_help_reads_well() -> None:
    result = CliRunner().invoke(main, ["check", "--help"])
    assert result.exit_code == 0
    assert "Exit status:" in result.stdout
    assert "--limits-file" in result.stdout


def test_check_counts_gpus_asked_for_through_a_resource_claim_template(
    tmp_path: Path, limits_file: Path
) -> None:
    """Issue 11: 64 GPUs through DRA, the template in another file; a missing one is an error."""
    claimed = pod(
        container(), resourceClaims=[{"name": "gpus", "resourceClaimTemplateName": "gpus-64"}]
    )
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "gpus-64", "namespace": "team-a"},
        "spec": {"spec": {"devices": {"requests": [
            {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 64}}
        ]}}},
    }  # fmt: skip
    first = write(tmp_path, "a-pod.yaml", claimed)
    second = write(tmp_path, "b-template.yaml", template)
    result = check("-f", str(first), "-f", str(second), "--limits-file", str(limits_file))
    assert result.exit_code == 1, result.output
    assert (
        "deviceclass.resource.kubernetes.io/gpu.nvidia.com 64 > 2 cards per node" in result.output
    )
    alone = check("-f", str(first), "--limits-file", str(limits_file))
    assert alone.exit_code == 2
    assert "ResourceClaimTemplate 'gpus-64' not found in the input files" in alone.output


def test_check_judges_a_trainjob_by_the_runtime_in_the_input_files() -> None:
    result = check(
        "-f",
        str(EXAMPLES / "manifests" / "trainjob.yaml"),
        "--limits-file",
        str(EXAMPLES / "limits.yaml"),
        "--output",
        "json",
    )
    assert result.exit_code == 1, result.output
    by_name = {r["name"]: r for r in json.loads(result.stdout)["results"]}
    assert by_name["llm-finetune-fits"]["allowed"] is True
    assert by_name["llm-finetune-too-big"]["message"] == (
        "nodelimits: TrainJob team-a/llm-finetune-too-big does not fit one node of resource "
        'group "a800x8" (gpu): replicated job node: nvidia.com/gpu 8 > 4 cards per node'
    )


def test_check_finds_the_runtime_in_another_file(tmp_path: Path) -> None:
    runtime, fits, _ = yaml.safe_load_all((EXAMPLES / "manifests" / "trainjob.yaml").read_text())
    first = write(tmp_path, "a-trainjob.yaml", fits)
    second = write(tmp_path, "b-runtime.yaml", runtime)
    result = check(
        "-f", str(first), "-f", str(second), "--limits-file", str(EXAMPLES / "limits.yaml")
    )
    assert result.exit_code == 0, result.output


def test_a_trainjob_whose_runtime_is_not_in_the_input_files_is_an_error(tmp_path: Path) -> None:
    _, fits, _ = yaml.safe_load_all((EXAMPLES / "manifests" / "trainjob.yaml").read_text())
    result = check(
        "-f", str(write(tmp_path, "tj.yaml", fits)), "--limits-file", str(EXAMPLES / "limits.yaml")
    )
    assert result.exit_code == 2
    assert (
        "tj.yaml: document 1 (TrainJob team-a/llm-finetune-fits): spec.runtimeRef: "
        'ClusterTrainingRuntime "torch-distributed-a800" not found in the input files'
    ) in result.output


def test_a_trainjob_naming_a_runtime_of_an_unknown_kind_is_an_error(tmp_path: Path) -> None:
    runtime, fits, _ = yaml.safe_load_all((EXAMPLES / "manifests" / "trainjob.yaml").read_text())
    fits["spec"]["runtimeRef"]["kind"] = "Runtime"
    path = write(tmp_path, "tj.yaml", runtime, fits)
    result = check("-f", str(path), "--limits-file", str(EXAMPLES / "limits.yaml"))
    assert result.exit_code == 2
    assert "spec.runtimeRef.kind: must be ClusterTrainingRuntime or TrainingRuntime" in (
        result.output
    )


# --- hostile and unusual input (issue 12, findings 10 and 11) -----------------------------


def _fits_and_big(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write(tmp_path, "fits.yaml", pod(container(cpu="1"), name="fits")),
        write(tmp_path, "big.yaml", pod(container(cpu="999"), name="big")),
    )


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("deep.json", b"[" * 100_000 + b"]" * 100_000, id="json-100k"),
        pytest.param("deep.yaml", b"[" * 100_000 + b"]" * 100_000, id="yaml-flow-100k"),
        pytest.param("deep129.json", b"[" * 129 + b"]" * 129, id="json-129"),
        pytest.param("latin1.yaml", "kind: Pod\nmetadata: {name: caf\xe9}\n".encode("latin-1"),
                     id="not-utf8"),
    ],
)  # fmt: skip
def test_unreadable_files_are_an_error_exit_2_and_keep_the_other_verdicts(
    tmp_path: Path, limits_file: Path, name: str, content: bytes
) -> None:
    """A 100k-deep file was a RecursionError traceback and exit 1 (libyaml: a crash),
    dropping the verdicts of the other files."""
    bad = tmp_path / name
    bad.write_bytes(content)
    fits, big = _fits_and_big(tmp_path)
    code, out = check_json("-f", str(fits), "-f", str(bad), "-f", str(big),
                           "--limits-file", str(limits_file))  # fmt: skip
    assert code == 2
    assert [r["allowed"] for r in out["results"]] == [True, False]
    assert out["summary"]["errors"] == 1


def test_non_utf8_on_stdin_is_the_same_clean_error_as_by_path(limits_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["check", "-f", "-", "--limits-file", str(limits_file)], input=b"kind: Pod\n\xff\n"
    )
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_json_stream_and_a_bom_are_read_as_kubectl_reads_them(
    tmp_path: Path, limits_file: Path
) -> None:
    stream = tmp_path / "stream.json"
    docs = [pod(container(cpu="1"), name="a"), pod(container(cpu="999"), name="b")]
    stream.write_bytes(b"\xef\xbb\xbf" + b"\n".join(json.dumps(d).encode() for d in docs))
    code, out = check_json("-f", str(stream), "--limits-file", str(limits_file))
    assert code == 1
    assert [(r["name"], r["allowed"]) for r in out["results"]] == [("a", True), ("b", False)]


MERGE = """\
apiVersion: v1
kind: Pod
metadata:
  name: merged
  labels: &small {nodelimits.io/resource-group: TeslaM40}
  annotations:
    <<: [*small, &large {nodelimits.io/resource-group: a800x8}]
spec:
  containers: [{name: c, image: x, resources: {requests: {cpu: "100"}}}]
"""


def test_yaml_merge_keys_let_the_earlier_mapping_win_whatever_pyyaml_is_installed(
    tmp_path: Path, limits_file: Path
) -> None:
    """kubectl reads <<: [*small, *large] as TeslaM40 (40 cores): 100 cores are rejected.
    PyYAML 6.0.4 lets the later mapping win (a800x8, 128 cores): allowed."""
    path = tmp_path / "merge.yaml"
    path.write_text(MERGE)
    code, out = check_json("-f", str(path), "--limits-file", str(limits_file))
    (result,) = out["results"]
    assert result["resourceGroup"] == "TeslaM40"
    assert code == 1


@pytest.mark.parametrize("name", ["nvidia.com/GPU", "NVIDIA.com/gpu"])
def test_card_resources_in_another_case_are_counted(
    tmp_path: Path, limits_file: Path, name: str
) -> None:
    obj = pod(container(cpu="1"), name="gpus")
    obj["spec"]["containers"][0]["resources"]["limits"] = {name: 8}
    code, out = check_json("-f", str(write(tmp_path, "g.yaml", obj)), "--limits-file",
                           str(limits_file))  # fmt: skip
    assert code == 1
    assert "8 > 2 cards" in out["results"][0]["violations"][0]["message"]


def test_merge_key_verdict_holds_under_pyyaml_6_0_4_precedence(
    tmp_path: Path, limits_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed PyYAML's own merge handling is not used: made last-wins (6.0.4's
    behaviour) here, the verdict is the same."""

    def last_wins(self: Any, node: Any) -> None:
        merged, own = [], []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                for source in getattr(value_node, "value", []):
                    merged.extend(source.value)
            else:
                own.append((key_node, value_node))
        node.value = merged + own

    monkeypatch.setattr(yaml.constructor.SafeConstructor, "flatten_mapping", last_wins)
    path = tmp_path / "merge.yaml"
    path.write_text(MERGE)
    _, out = check_json("-f", str(path), "--limits-file", str(limits_file))
    assert out["results"][0]["resourceGroup"] == "TeslaM40"


# --- formats, views and conventions (issue 17, point 5) -----------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """One object of each verdict: a fitting Pod (with a run-time warning), a rejected Job,
    an unannotated (skipped) Pod."""
    return write(
        tmp_path,
        "mixed.yaml",
        pod(container(cpu="1"), group="kshd", accelerator="dcu", name="fits"),
        job(container(gpu=4)),
        pod(container(cpu="1"), group=None, name="plain"),
    )


WARNING = (
    'Warning: Pod team-a/fits: no activeDeadlineSeconds: resource group "kshd" limits run '
    "time to maxTime 24:00:00 (86400s); set activeDeadlineSeconds <= 86400"
)
DENIAL = (
    'nodelimits: Job team-a/train does not fit one node of resource group "TeslaM40" '
    "(gpu): nvidia.com/gpu 4 > 2 cards per node"
)


def junit(*args: str) -> tuple[int, ET.Element]:
    result = check(*args, "-o", "junit")
    return result.exit_code, ET.fromstring(result.stdout)  # noqa: S314 - our own output


def test_yaml_output_is_the_json_document(mixed: Path, limits_file: Path) -> None:
    as_yaml = check("-f", str(mixed), "--limits-file", str(limits_file), "-o", "yaml")
    code, as_json = check_json("-f", str(mixed), "--limits-file", str(limits_file))
    assert as_yaml.exit_code == code == 1
    assert yaml.safe_load(as_yaml.stdout) == as_json


def test_junit_has_one_testcase_per_object_with_its_file_and_name(
    mixed: Path, limits_file: Path
) -> None:
    code, root = junit("-f", str(mixed), "--limits-file", str(limits_file))
    assert code == 1
    (suite,) = root.findall("testsuite")
    cases = [(c.get("classname"), c.get("name")) for c in suite.iter("testcase")]
    assert cases == [
        (str(mixed), "Pod team-a/fits"),
        (str(mixed), "Job team-a/train"),
        (str(mixed), "Pod team-a/plain"),
    ]
    counts = {"tests": "3", "failures": "1", "errors": "0", "skipped": "1"}
    assert {k: suite.get(k) for k in counts} == counts == {k: root.get(k) for k in counts}


def test_junit_failure_carries_the_denial_message(mixed: Path, limits_file: Path) -> None:
    _, root = junit("-f", str(mixed), "--limits-file", str(limits_file))
    (failure,) = root.iter("failure")
    assert failure.get("message") == DENIAL
    assert failure.text == "nvidia.com/gpu 4 > 2 cards per node"


def test_junit_skipped_and_warnings_are_reported_on_their_testcases(
    mixed: Path, limits_file: Path
) -> None:
    _, root = junit("-f", str(mixed), "--limits-file", str(limits_file))
    fits, _, plain = root.iter("testcase")
    assert plain.find("skipped").get("message") == "no resource group annotation"  # type: ignore[union-attr]
    assert fits.findtext("system-err") == WARNING.replace(" Pod team-a/fits:", "")
    assert fits.find("failure") is None


def test_junit_reports_an_unreadable_document_as_an_error_testcase(
    tmp_path: Path, limits_file: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: [\n")
    code, root = junit("-f", str(bad), "--limits-file", str(limits_file))
    assert code == 2
    (case,) = root.iter("testcase")
    assert case.get("classname") == str(bad)
    error = case.find("error")
    assert error is not None
    assert error.get("message", "").startswith(f"{bad}: document 1: invalid YAML")
    assert root.get("errors") == "1"


def test_junit_escapes_markup_and_replaces_characters_xml_cannot_hold(
    tmp_path: Path, limits_file: Path
) -> None:
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(pod(container(cpu="999"), name='a<b>&"c"\x01]]>')))
    result = check("-f", str(path), "--limits-file", str(limits_file), "-o", "junit")
    assert result.exit_code == 1
    (case,) = ET.fromstring(result.stdout).iter("testcase")  # noqa: S314 - well-formed
    assert case.get("name") == 'Pod team-a/a<b>&"c"\ufffd]]>'


def test_no_headers_prints_only_the_rows(mixed: Path, limits_file: Path) -> None:
    result = check("-f", str(mixed), "--limits-file", str(limits_file), "--no-headers")
    lines = result.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["ALLOWED", "Pod", "team-a/fits"],
        ["REJECTED", "Job", "team-a/train"],
        ["SKIPPED", "Pod", "team-a/plain"],
    ]


def test_the_table_names_the_source_file(mixed: Path, limits_file: Path) -> None:
    result = check("-f", str(mixed), "--limits-file", str(limits_file), "--no-headers")
    assert [line.split()[5] for line in result.stdout.splitlines()] == [str(mixed)] * 3
    header = check("-f", str(mixed), "--limits-file", str(limits_file)).stdout.splitlines()[0]
    assert header.split() == ["RESULT", "KIND", "NAME", "GROUP", "TYPE", "SOURCE", "DETAILS"]


def test_the_table_shows_stdin_as_the_source_of_what_came_on_stdin(limits_file: Path) -> None:
    result = check(
        "-f", "-", "--limits-file", str(limits_file), "--no-headers",
        stdin=yaml.safe_dump(pod(container(cpu="1"))),
    )  # fmt: skip
    assert result.stdout.split()[5] == "stdin"


def test_fail_only_lists_only_rejected_objects(mixed: Path, limits_file: Path) -> None:
    result = check("-f", str(mixed), "--limits-file", str(limits_file), "--fail-only")
    assert result.exit_code == 1
    rows = result.stdout.splitlines()[1:-2]
    assert [row.split()[:3] for row in rows] == [["REJECTED", "Job", "team-a/train"]]
    assert result.stdout.endswith("3 objects: 1 allowed, 1 rejected, 1 skipped\n")


def test_fail_only_narrows_json_results_but_not_the_summary(mixed: Path, limits_file: Path) -> None:
    code, report = check_json("-f", str(mixed), "--limits-file", str(limits_file), "--fail-only")
    assert code == 1
    assert [r["name"] for r in report["results"]] == ["train"]
    assert report["summary"]["objects"] == 3


def test_fail_only_keeps_the_error_testcases_in_junit(tmp_path: Path, limits_file: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: [\n")
    fits = write(tmp_path, "fits.yaml", pod(container(cpu="1")))
    code, root = junit("-f", str(fits), "-f", str(bad), "--limits-file", str(limits_file),
                       "--fail-only")  # fmt: skip
    assert code == 2
    assert [c.find("error") is not None for c in root.iter("testcase")] == [True]


def test_warnings_go_to_stderr_in_table_mode(mixed: Path, limits_file: Path) -> None:
    result = check("-f", str(mixed), "--limits-file", str(limits_file))
    assert result.stderr.splitlines() == [WARNING]
    assert "Warning" not in result.stdout


@pytest.mark.parametrize("fmt", ["json", "yaml", "junit"])
def test_machine_formats_carry_warnings_in_the_document_not_on_stderr(
    mixed: Path, limits_file: Path, fmt: str
) -> None:
    result = check("-f", str(mixed), "--limits-file", str(limits_file), "-o", fmt)
    assert result.stderr == ""
    assert "no activeDeadlineSeconds" in result.stdout


def test_a_directory_without_manifests_exits_2_naming_it(tmp_path: Path, limits_file: Path) -> None:
    empty = tmp_path / "manifsets"
    empty.mkdir()
    (empty / "README.md").write_text("not a manifest")
    result = check("-f", str(empty), "--limits-file", str(limits_file))
    assert result.exit_code == 2
    assert result.stderr == f"error: {empty}: no manifests found (.json, .yaml, .yml files)\n"


def test_a_file_without_objects_exits_2_naming_it_and_keeps_the_others(
    tmp_path: Path, limits_file: Path
) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n---\n")
    fits = write(tmp_path, "fits.yaml", pod(container(cpu="1")))
    code, report = check_json("-f", str(empty), "-f", str(fits), "--limits-file",
                              str(limits_file))  # fmt: skip
    assert code == 2
    assert report["errors"] == [f"{empty}: no objects in it"]
    assert [r["allowed"] for r in report["results"]] == [True]
