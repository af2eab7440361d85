"""Fixtures for tests on the real node (devtools/realnode.py): pods run, the scheduler judges.

- `real_node` (session): ONE node for every test here (start-up ~15 s, ~0.8 GiB): the
  busybox and nodelimits images imported, the platform simulator running as a pod and
  serving examples/limits.yaml plus `realnode`, a group whose one node is this node.
- `nodelimits_installed` / `nodelimits_absent`: the chart installed by helm (both replicas
  Ready, denials reaching the apiserver) or not; each test says which it needs, so the
  order of the tests does not matter. Installed is the state most tests leave behind.
- `namespace`: a fresh namespace per test.

`test_teardown.py` stops the node and compares the machine with its state before the
first start: it is moved to the end of the run (see `pytest_collection_modifyitems`).
Marks: `node` on every test here (with `testbin` and `e2e`). Without root or the Debian
packages the tests skip, unless NODELIMITS_REQUIRE_E2E=1 (CI), where they fail.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from devtools import nodeimages, nodestack, realnode
from devtools.controlplane import TestbinUnavailable
from devtools.stack import EXAMPLE_LIMITS, RELEASE, RELEASE_NAMESPACE
from tests.conftest import ENV_REQUIRE, prepare_after_collection, prepared, required

HERE = Path(__file__).parent
LOG_LINES_IN_REPORT = 40


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node: runs on the real node (devtools/realnode.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: before `-m` deselects, so `-m "not testbin"` (make test-fast) sees the marks
    # and never starts the node build; deselecting keeps the order set here.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.testbin)
    # the teardown check stops the shared node: after every other test that uses it
    last = [item for item in items if item.path.name == "test_teardown.py"]
    items[:] = [item for item in items if item not in last] + last


@dataclass
class NodeSession:
    """The shared node and what the tests need to know about it."""

    node: realnode.RealNode
    image: nodeimages.ImageArchive
    simulator: nodestack.Simulator
    before: Any  # hoststate.HostState, taken before the first start
    installed: bool = False
    extra_values: dict[str, Any] = field(default_factory=dict)

    install_failed: str = ""
    """Why the first install failed: later tests fail at once instead of waiting again."""

    def install(self, extra: dict[str, Any] | None = None, *, upgrade: bool = False) -> None:
        if self.install_failed and not upgrade:
            pytest.fail(f"nodelimits could not be installed earlier: {self.install_failed}")
        try:
            nodestack.install(self.node, self.image, self.simulator, extra, upgrade=upgrade)
        except nodestack.NodeStackError as exc:
            if not upgrade:
                self.install_failed = str(exc)
            raise
        self.installed = True

    def uninstall(self) -> None:
        nodestack.uninstall(self.node)
        self.installed = False


@dataclass(frozen=True)
class _Prepared:
    bin_dir: Path
    busybox: nodeimages.ImageArchive
    image: nodeimages.ImageArchive


def _prepare() -> _Prepared | str:
    """The node binaries and the images, or why they cannot be had."""
    missing = realnode.prerequisites_missing()
    if missing:
        return "; ".join(missing)
    try:
        return _Prepared(
            realnode.find_node_bin_dir(),
            nodeimages.busybox(realnode.IMAGE_CACHE),
            # the Dockerfile's image; under NODELIMITS_REQUIRE_E2E=1 no stand-in for it
            nodeimages.nodelimits_image(realnode.IMAGE_CACHE, fallback=not required(), log=_say),
        )
    except (TestbinUnavailable, nodeimages.ImageUnavailable) as exc:
        return str(exc)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the node binaries and images once, outside any test's timeout (the first
    `build.sh --node` takes minutes), and only if a test here runs."""
    needed = any(HERE in item.path.parents for item in session.items)
    prepare_after_collection(session, _PREPARED, needed, _prepare)


@pytest.fixture(scope="session")
def node_session(request: pytest.FixtureRequest) -> Iterator[NodeSession]:
    ready = prepared(request, _PREPARED, _prepare)
    if isinstance(ready, str):
        _skip_or_fail(ready)
    image = ready.image
    node = realnode.RealNode(ready.bin_dir, images=[ready.busybox, image])
    node.start()
    request.session.stash[_NODE] = node
    # taken by start() after it undid what a killed earlier run left (its state file says
    # what to restore): the machine as this run found it, not that run's leftovers
    before = node.before
    try:
        assert before is not None
        groups = yaml.safe_load(EXAMPLE_LIMITS.read_text())["resourceGroups"]
        simulator = nodestack.deploy_simulator(node, image, [*groups, node.node_group()])
        yield NodeSession(node, image, simulator, before)
    finally:
        node.stop()


@pytest.fixture(scope="session")
def real_node(node_session: NodeSession) -> realnode.RealNode:
    return node_session.node


@pytest.fixture
def nodelimits_installed(node_session: NodeSession) -> NodeSession:
    if not node_session.installed:
        node_session.install()
    return node_session


@pytest.fixture
def nodelimits_absent(node_session: NodeSession) -> NodeSession:
    if node_session.installed or _release_exists(node_session.node):
        node_session.uninstall()
    return node_session


@pytest.fixture
def namespace(real_node: realnode.RealNode, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace named after the test, deleted afterwards (without waiting)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    name = f"node-{slug[:40].rstrip('-')}-{secrets.token_hex(2)}"
    real_node.kubectl("create", "namespace", name)
    yield name
    real_node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _release_exists(node: realnode.RealNode) -> bool:
    result = node.helm("status", RELEASE, "--namespace", RELEASE_NAMESPACE, check=False)
    return result.returncode == 0


def _skip_or_fail(reason: str) -> NoReturn:
    if required():
        pytest.fail(f"the real node cannot run here: {reason}", pytrace=False)
    pytest.skip(f"the real node cannot run here: {reason} ({ENV_REQUIRE}=1 makes this a failure)")


_NODE = pytest.StashKey[realnode.RealNode]()
_PREPARED = pytest.StashKey["_Prepared | str"]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test on the node gets the pods, the events and the kubelet's log tail."""
    report = yield
    node = item.session.stash.get(_NODE, None)
    if report.failed and node is not None and node.plane is not None and HERE in item.path.parents:
        pods = node.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        events = node.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False)
        report.sections.append(("pods on the real node", pods))
        report.sections.append(("events, last 40", "\n".join(events.stdout.splitlines()[-40:])))
        report.sections.append(("kubelet log", node.log_tail("kubelet", LOG_LINES_IN_REPORT)))
    return report
