"""The lock (requirements.lock) against what the code declares, and PyYAML against kubectl.

`make lock` upgrades the lock on purpose; these tests decide whether the result is usable:
every requirement pyproject.toml declares (runtime, every extra, the build backend) is
pinned in the lock by a version it accepts, with hashes; the image's requirements are the
same pins and hashes as the lock, and are exactly what `nodelimits[fast]` needs.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from webhook.manifests import Document, read_documents

ROOT = Path(__file__).parents[2]
LOCK = ROOT / "requirements.lock"
IMAGE_REQS = ROOT / "requirements.image.txt"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\]+)")


def pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a pip-compile output."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    name = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = PIN.match(line)
        if m:
            name = canonicalize_name(m.group(1))
            out[name] = (m.group(2), frozenset())
        for h in re.findall(r"--hash=(sha256:[0-9a-f]{64})", line):
            version, hashes = out[name]
            out[name] = (version, hashes | {h})
    return out


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def declared() -> dict[str, list[Requirement]]:
    data = pyproject()
    project = data["project"]
    assert isinstance(project, dict)
    groups = {"runtime": [Requirement(r) for r in project["dependencies"]]}
    for extra, reqs in project["optional-dependencies"].items():
        groups[extra] = [Requirement(r) for r in reqs]
    build = data["build-system"]
    assert isinstance(build, dict)
    groups["build"] = [Requirement(r) for r in build["requires"]]
    return groups


def closure(roots: list[Requirement], lock: dict[str, tuple[str, frozenset[str]]]) -> set[str]:
    """Names `roots` need, transitively, read from the installed metadata of the lock's pins."""
    from importlib.metadata import PackageNotFoundError, requires

    env = default_environment()
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if req.marker and not req.marker.evaluate({**env, "extra": ""}):
            continue
        if name in seen:
            continue
        seen.add(name)
        try:
            deps = requires(name) or []
        except PackageNotFoundError:
            pytest.fail(f"{name} is in the lock but not installed: run `make install`")
        for dep in map(Requirement, deps):
            if dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": e}) for e in ("", *req.extras)
            ):
                todo.append(dep)
    return seen


def test_every_declared_requirement_is_pinned_in_the_lock_with_hashes() -> None:
    lock = pins(LOCK)
    problems = []
    for group, reqs in declared().items():
        for req in reqs:
            name = canonicalize_name(req.name)
            if name not in lock:
                problems.append(f"{group}: {req} is not in the lock")
                continue
            version, hashes = lock[name]
            if not req.specifier.contains(version, prereleases=True):
                problems.append(f"{group}: {req} does not accept the locked {version}")
            if not hashes:
                problems.append(f"{group}: {name}=={version} has no hash")
    assert not problems, "requirements.lock is stale: run `make lock`\n" + "\n".join(problems)


def test_every_lock_entry_has_a_hash() -> None:
    for path in (LOCK, IMAGE_REQS):
        unhashed = [f"{n}=={v}" for n, (v, h) in pins(path).items() if not h]
        assert not unhashed, f"{path.name}: no hashes for {unhashed}"


def test_the_image_installs_the_locked_pins_and_exactly_what_nodelimits_fast_needs() -> None:
    lock, image = pins(LOCK), pins(IMAGE_REQS)
    differ = {
        n: (image[n][0], lock.get(n, ("absent",))[0]) for n in image if image[n] != lock.get(n)
    }
    assert not differ, f"requirements.image.txt differs from the lock (image, lock): {differ}"
    groups = declared()
    needed = closure(groups["runtime"] + groups["fast"], lock) | closure(groups["build"], lock)
    assert set(image) == needed, (
        f"missing from the image: {sorted(needed - set(image))}; "
        f"not needed by nodelimits[fast]: {sorted(set(image) - needed)} (run `make lock`)"
    )
    for dev_only in ("pytest", "mypy", "ruff", "hypothesis", "pip-tools"):
        assert dev_only not in image


def test_the_installed_versions_are_the_locked_ones() -> None:
    from importlib.metadata import version

    lock = pins(LOCK)
    wrong = {}
    for req in declared()["runtime"] + declared()["fast"]:
        name = canonicalize_name(req.name)
        if version(name) != lock[name][0]:
            wrong[name] = (version(name), lock[name][0])
    assert not wrong, f"installed, locked: {wrong}: run `make install`"


# A pod whose annotations come from a merge key with two maps naming the same key.
MERGE = """\
apiVersion: v1
kind: Pod
metadata:
  name: merged
  annotations:
    <<: [{nodelimits.io/resource-group: FirstGroup}, {nodelimits.io/resource-group: SecondGroup}]
spec: {containers: [{name: c, image: busybox}]}
"""


def _group(tmp_path: Path) -> str:
    path = tmp_path / "merged.yaml"
    path.write_text(MERGE, encoding="utf-8")
    [doc] = list(read_documents(str(path)))
    assert isinstance(doc, Document)
    annotations = doc.obj["metadata"]["annotations"]
    assert isinstance(annotations, dict)
    return str(annotations["nodelimits.io/resource-group"])


def test_merge_keys_first_map_wins_as_in_yaml_1_1(tmp_path: Path) -> None:
    # PyYAML <= 6.0.3 and go-yaml (kubectl): the earlier map in a merge list takes precedence.
    assert _group(tmp_path) == "FirstGroup"


@pytest.mark.testbin
def test_merge_keys_read_as_kubectl_reads_them(tmp_path: Path, testbin: Path) -> None:
    path = tmp_path / "merged.yaml"
    path.write_text(MERGE, encoding="utf-8")
    out = subprocess.run(
        [str(testbin / "kubectl"), "label", "--local", "-f", str(path), "-o", "json", "probe=1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import json

    assert json.loads(out)["metadata"]["annotations"]["nodelimits.io/resource-group"] == (
        _group(tmp_path)
    )
