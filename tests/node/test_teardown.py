"""Stopping the real node leaves the machine as it was: run last (see conftest.py)."""

from __future__ import annotations

from devtools import hoststate
from tests.node.conftest import NodeSession


def test_stopping_the_node_leaves_no_process_mount_link_chain_sysctl_or_cgroup(
    node_session: NodeSession,
) -> None:
    node = node_session.node
    during = node.snapshot()
    assert hoststate.differences(node_session.before, during)  # the node did change things

    node.stop()

    assert hoststate.differences(node_session.before, node.snapshot()) == []
