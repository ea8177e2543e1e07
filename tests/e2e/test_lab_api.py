"""The pytest fixture of docs/lab.md, as written there: a two-router lab built with
``tsubo.Lab`` in this process, used by a test, destroyed by the fixture.

A lab without a management network makes nothing in the host's namespace (its links go
straight between the nodes' namespaces), so it runs in the test's own process; the leak
check confirms nothing is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tsubo
from tests.e2e.engine_fixtures import wait_engine_gone


@pytest.fixture
def two_routers(tmp_path: Path, busybox_rootfs: Path) -> Iterator[tsubo.Lab]:
    with tsubo.Lab("pair", root=str(tmp_path / "root"), rootfs=str(busybox_rootfs)) as lab:
        lab.node("r1", cmd="sleep 600").node("r2", cmd="sleep 600")
        lab.link("r1:eth1", "r2:eth1", "10.0.0.1/24", "10.0.0.2/24")
        lab.deploy()
        yield lab
    wait_engine_gone(tmp_path / "root")


def test_two_routers_reach_each_other_over_their_link(two_routers: tsubo.Lab) -> None:
    assert two_routers.check_reachable("r1", "r2:eth1")
    assert two_routers.check_reachable("r2:eth1", "10.0.0.1")
    assert two_routers.check_unreachable("r1", "10.0.0.9")  # on the link, nobody there
    shown = two_routers.exec("r2", ["ip", "addr", "show", "eth1"])
    assert shown.exit_code == 0 and b"10.0.0.2/24" in shown.stdout
    assert two_routers.engine.labs() == ["pair"]
    assert not two_routers.check_reachable("r1", "r2:eth1", tcp=22)  # no server: refused
