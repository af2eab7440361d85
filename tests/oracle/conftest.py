"""The differential oracle (tools/oracle: Kubernetes v1.37.2's own code) for these tests.

Built once per session by tools/oracle/build.sh (seconds when the testbin's kube build
cache is warm, minutes cold). Without Go the tests skip, unless NODELIMITS_REQUIRE_E2E=1
(CI), which makes that a failure. Test modules here carry `pytestmark = pytest.mark.testbin`
(so `make test-fast`, which deselects `testbin`, needs no Go).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import oracle
from devtools.controlplane import TestbinUnavailable
from tests.conftest import ENV_REQUIRE, required


@pytest.fixture(scope="session")
def oracle_bin() -> Path:
    try:
        return oracle.find_oracle()
    except TestbinUnavailable as exc:
        if exc.go_missing and not required():
            pytest.skip(f"{exc} ({ENV_REQUIRE}=1 makes this a failure)")
        pytest.fail(str(exc), pytrace=False)
