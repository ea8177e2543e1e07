"""Health checks, pure parts: Go durations for --health-*, the flags over the image's
HEALTHCHECK, and Docker's rules for a probe result (engine/health.py)."""

from __future__ import annotations

import time

import pytest

from tsubo.engine.core import effective_healthcheck
from tsubo.engine.health import HEALTHY, STARTING, UNHEALTHY, HealthState, ProbeResult
from tsubo.engine.options import build_run_options, parse_duration
from tsubo.errors import InvalidArgument

SECOND = 1_000_000_000


@pytest.mark.parametrize(("text", "nanos"), [
    ("30s", 30 * SECOND), ("1m30s", 90 * SECOND), ("500ms", SECOND // 2),
    ("1.5h", 5400 * SECOND), ("0", 0), ("2us", 2000), ("1h2m3s", 3723 * SECOND),
])
def test_parse_duration(text: str, nanos: int) -> None:
    assert parse_duration(text, "--health-interval") == nanos


@pytest.mark.parametrize("text", ["", "abc", "-1s", "10", "1x", "s", "1s2"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_duration(text, "--health-interval")


def test_flags_make_a_health_config() -> None:
    options = build_run_options({"rootfs": "/r", "health_cmd": "curl -f x",
                                 "health_interval": "5s", "health_retries": "2",
                                 "health_start_period": "1m"})
    assert options.healthcheck == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 5 * SECOND,
                                   "StartPeriod": 60 * SECOND, "Retries": 2}
    assert build_run_options({"rootfs": "/r", "health_interval": 0.5}).healthcheck == {
        "Interval": SECOND // 2}  # the API's seconds
    assert build_run_options({"rootfs": "/r", "no_healthcheck": True}).healthcheck == {
        "Test": ["NONE"]}
    assert build_run_options({"rootfs": "/r"}).healthcheck is None
    for bad in ({"no_healthcheck": True, "health_cmd": "x"}, {"health_timeout": "10us"},
                {"health_retries": "-1"}, {"health_interval": "soon"}):
        with pytest.raises(InvalidArgument):
            build_run_options({"rootfs": "/r", **bad})


IMAGE = {"Test": ["CMD", "/check"], "Interval": 10 * SECOND, "Retries": 5}


@pytest.mark.parametrize(("given", "expected"), [
    (None, {"Test": ["CMD", "/check"], "Interval": 10 * SECOND, "Retries": 5,
            "Timeout": 30 * SECOND, "StartPeriod": 0}),
    ({"Interval": SECOND}, {"Test": ["CMD", "/check"], "Interval": SECOND, "Retries": 5,
                            "Timeout": 30 * SECOND, "StartPeriod": 0}),
    ({"Test": ["CMD-SHELL", "true"]}, {"Test": ["CMD-SHELL", "true"],
                                       "Interval": 10 * SECOND, "Retries": 5,
                                       "Timeout": 30 * SECOND, "StartPeriod": 0}),
    ({"Test": ["NONE"]}, None),
])
def test_flags_over_the_image(given: dict[str, object] | None,
                              expected: dict[str, object] | None) -> None:
    assert effective_healthcheck(given, IMAGE) == expected


def test_no_check_anywhere() -> None:
    assert effective_healthcheck(None, None) is None
    assert effective_healthcheck({"Interval": SECOND}, {}) is None  # no command to run
    assert effective_healthcheck(None, {"Test": ["NONE"]}) is None


def _result(code: int) -> ProbeResult:
    return ProbeResult("s", "e", code, f"exit {code}")


def test_results_follow_dockers_rules(tmp_path: object) -> None:
    state = HealthState({"Test": ["CMD", "x"], "Interval": SECOND, "Retries": 2,
                         "StartPeriod": 0}, "/nonexistent")
    assert state.status == STARTING
    assert state.record(_result(1)) is False  # one failure of two allowed
    assert (state.status, state.failing_streak) == (STARTING, 1)
    assert state.record(_result(1)) is True
    assert (state.status, state.failing_streak) == (UNHEALTHY, 2)
    assert state.record(_result(0)) is True
    assert (state.status, state.failing_streak) == (HEALTHY, 0)
    for _ in range(7):
        state.record(_result(3))
    assert len(state.log) == 5 and state.log[-1]["ExitCode"] == 3
    assert state.next_at > time.monotonic()


def test_failures_in_the_start_period_do_not_count() -> None:
    state = HealthState({"Test": ["CMD", "x"], "Interval": SECOND, "Retries": 1,
                         "StartPeriod": 60 * SECOND}, "/nonexistent")
    assert state.record(_result(1)) is False
    assert (state.status, state.failing_streak) == (STARTING, 0)
    assert state.record(_result(0)) is True and state.status == HEALTHY
    assert state.record(_result(1)) is True  # healthy once: the start period is over
    assert state.status == UNHEALTHY


# --- --mount (the same module's parser; kept here with the other issue-13 run flags) ------

@pytest.mark.parametrize(("text", "expected"), [
    ("type=bind,src=/tmp,dst=/data,readonly", {"source": "/tmp", "destination": "/data",
                                               "read_only": True}),
    ("type=bind,source=rel,target=/x", {"source": "/base/rel", "destination": "/x",
                                        "read_only": False}),
    ("type=volume,source=vol,target=/v", {"source": "vol", "destination": "/v",
                                          "read_only": False}),
    ("target=/anon", {"source": "", "destination": "/anon", "read_only": False}),
])
def test_mount_becomes_a_volume_spec(text: str, expected: dict[str, object]) -> None:
    from tsubo.engine.options import VolumeSpec, parse_mount

    spec = parse_mount(text, "/base")
    assert isinstance(spec, VolumeSpec)
    assert {key: spec.to_json()[key] for key in expected} == expected


def test_mount_tmpfs_and_refusals() -> None:
    from tsubo.engine.options import TmpfsSpec, parse_mount

    spec = parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1777")
    assert isinstance(spec, TmpfsSpec) and spec.options == ["size=64m", "mode=1777"]
    for bad in ("type=bind,dst=/x", "src=/a", "type=nfs,dst=/x", "foo=1,dst=/x",
                "type=volume,src=/abs,dst=/x", "type=tmpfs,src=x,dst=/t", "dst=relative",
                "type=bind,src=/a,dst=/b,readonly=maybe", "type=volume,src=v,dst=/x"):
        with pytest.raises(InvalidArgument) as caught:
            parse_mount(bad)
        assert caught.value.operation == "parse --mount", bad
