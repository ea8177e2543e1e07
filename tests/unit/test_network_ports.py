"""Docker's -p / --expose grammar, the texts of ps/port/inspect, and host port choice
(tsubo.network.ports: pure, no root)."""

from __future__ import annotations

import pytest

from tsubo.engine.options import DEFAULT_NETWORK_ENV, RunOptions, build_run_options
from tsubo.errors import InvalidArgument
from tsubo.network.ports import (
    PortSpec,
    PortTaken,
    PublishedPort,
    choose,
    parse_expose,
    parse_publish,
    port_lines,
    ports_column,
    ports_map,
    publish_all,
)


def specs(text: str) -> list[tuple[str, int, int, int, str]]:
    return [(s.host_ip, s.host_start, s.host_end, s.container_port, s.protocol)
            for s in parse_publish(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("80", [("", 0, 0, 80, "tcp")]),
    ("80/udp", [("", 0, 0, 80, "udp")]),
    ("80/SCTP", [("", 0, 0, 80, "sctp")]),
    ("8080:80", [("", 8080, 8080, 80, "tcp")]),
    ("0:80", [("", 0, 0, 80, "tcp")]),
    (":80", [("", 0, 0, 80, "tcp")]),
    ("127.0.0.1:8080:80", [("127.0.0.1", 8080, 8080, 80, "tcp")]),
    ("0.0.0.0:8080:80/udp", [("0.0.0.0", 8080, 8080, 80, "udp")]),  # IPv4 only
    ("127.0.0.1::80", [("127.0.0.1", 0, 0, 80, "tcp")]),
    ("[::1]:8080:80", [("::1", 8080, 8080, 80, "tcp")]),
    ("[::]::80", [("::", 0, 0, 80, "tcp")]),
    ("::1:8080:80", [("::1", 8080, 8080, 80, "tcp")]),  # unbracketed, as Docker splits
    ("[fe80:0::1]:53:53/udp", [("fe80::1", 53, 53, 53, "udp")]),
    ("8000-8001:80-81", [("", 8000, 8000, 80, "tcp"), ("", 8001, 8001, 81, "tcp")]),
    ("80-81", [("", 0, 0, 80, "tcp"), ("", 0, 0, 81, "tcp")]),
    ("8000-8010:80", [("", 8000, 8010, 80, "tcp")]),  # any free port of the range
    ("1.2.3.4:9000-9001:90-91/sctp",
     [("1.2.3.4", 9000, 9000, 90, "sctp"), ("1.2.3.4", 9001, 9001, 91, "sctp")]),
    ("65535:65535", [("", 65535, 65535, 65535, "tcp")]),
])
def test_every_form_of_the_grammar(text: str, expected: list[tuple[object, ...]]) -> None:
    assert specs(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", 'parse --publish "": no port specified: <empty>'),
    ("8080:", "parse --publish 8080:: no port specified: 8080:<empty>"),
    ("1.2.3.4:80:", "no port specified: 1.2.3.4:80:<empty>"),
    ("abc", "invalid containerPort: abc"),
    ("0", "invalid containerPort: 0"),
    ("65536", "invalid containerPort: 65536"),
    ("90-80", "invalid containerPort: 90-80"),
    ("80-", "invalid containerPort: 80-"),
    ("-80", "invalid containerPort: -80"),
    ("x:80", "invalid hostPort: x"),
    ("70000:80", "invalid hostPort: 70000"),
    ("0-5:80", "invalid hostPort: 0-5"),
    ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and "
                        "8000-8002"),
    ("80/icmp", "invalid proto: icmp"),
    ("80/", "invalid proto: "),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("localhost:80:80", "invalid IP address: localhost"),
    ("[::1:80:80", "invalid IP address: [::1"),
    ("[1.2.3.400]:80:80", "invalid IP address: [1.2.3.400]"),
    ("1-5000", "too many ports: 5000"),
])
def test_every_error_is_one_line_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_publish(text)
    text_of_error = str(caught.value)
    assert message in text_of_error
    assert "\n" not in text_of_error


@pytest.mark.parametrize(("text", "expected"), [
    ("80", [(80, "tcp")]), ("53/udp", [(53, "udp")]), ("7000-7002/sctp",
                                                       [(7000, "sctp"), (7001, "sctp"),
                                                        (7002, "sctp")]),
])
def test_expose(text: str, expected: list[tuple[int, str]]) -> None:
    assert parse_expose(text) == expected


@pytest.mark.parametrize("text", ["", "0", "x", "80/icmp", "90-80", "80:80"])
def test_expose_errors(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--expose"):
        parse_expose(text)


def test_publish_all_adds_exposed_ports_no_spec_names() -> None:
    given = parse_publish("8080:80")
    result = publish_all(given, [(80, "tcp"), (81, "tcp"), (81, "tcp"), (53, "udp")])
    assert [(s.container_port, s.protocol, s.host_start) for s in result] == [
        (80, "tcp", 8080), (81, "tcp", 0), (53, "udp", 0)]


def test_options_builder_keeps_publish_for_cli_and_api_alike() -> None:
    cli = build_run_options({"rootfs": "/r", "network": ["web"], "publish": ["8080:80",
                                                                            "53/udp"],
                             "expose": ["90-91"], "publish_all": True})
    api = build_run_options({"rootfs": "/r", "networks": "web",
                             "ports": ["8080:80", "53/udp"], "expose": "90-91",
                             "publish_all": True})
    assert cli == api
    assert cli.publish == [PortSpec(80, "tcp", "", 8080), PortSpec(53, "udp")]
    assert cli.expose == ["90/tcp", "91/tcp"] and cli.publish_all
    assert RunOptions.from_json_text(cli.to_json_text()) == cli


@pytest.mark.parametrize("given", [
    {"publish": "80", "network": "none"}, {"publish": "80", "network": "host"},
    {"publish_all": True, "network": "none"}, {"publish": "80", "network": "container:x"},
])
def test_publishing_needs_a_network(given: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument, match="conflicting options: port publishing"):
        build_run_options({"rootfs": "/r", **given})


def test_publishing_without_network_uses_the_default_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``-p`` alone: on the default network ``bridge``, as Docker's; with the engine
    setting saying there is none, Docker's "conflicting options" as for ``--network none``."""
    monkeypatch.delenv(DEFAULT_NETWORK_ENV, raising=False)
    options = build_run_options({"rootfs": "/r", "publish": ["8080:80"]})
    assert (options.network, options.networks) == ("bridge", ["bridge"])
    assert options.publish == [PortSpec(80, "tcp", "", 8080)]
    monkeypatch.setenv(DEFAULT_NETWORK_ENV, "none")
    with pytest.raises(InvalidArgument, match="conflicting options: port publishing and the "
                       "none network mode"):
        build_run_options({"rootfs": "/r", "publish": ["8080:80"]})


def test_bad_publish_through_the_builder_names_the_flag() -> None:
    with pytest.raises(InvalidArgument, match=r"parse --publish 80/xyz: invalid proto: xyz"):
        build_run_options({"rootfs": "/r", "network": "web", "publish": ["80/xyz"]})
    with pytest.raises(InvalidArgument, match="expected a list of strings"):
        build_run_options({"rootfs": "/r", "network": "web", "publish": [80]})


def port(text: str) -> PublishedPort:
    host, _, rest = text.rpartition("->")
    ip, _, host_port = host.rpartition(":")
    container_port, _, protocol = rest.partition("/")
    return PublishedPort(ip.strip("[]"), int(host_port), int(container_port), protocol)


def test_ps_column_groups_consecutive_ports_like_docker() -> None:
    found = [port("0.0.0.0:8001->81/tcp"), port("0.0.0.0:8000->80/tcp"),
             port("0.0.0.0:8002->82/tcp"), port("127.0.0.1:5353->53/udp"),
             port("0.0.0.0:9000->90/tcp"), port("[::1]:7000->70/sctp")]
    assert ports_column(found) == (
        "[::1]:7000->70/sctp, 0.0.0.0:8000-8002->80-82/tcp, 0.0.0.0:9000->90/tcp, "
        "127.0.0.1:5353->53/udp")
    assert ports_column([]) == ""


def test_port_lines_and_inspect_map() -> None:
    found = [port("0.0.0.0:8080->80/tcp"), port("127.0.0.1:8081->80/tcp"),
             port("0.0.0.0:5353->53/udp")]
    assert port_lines(found) == ["80/tcp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081",
                                 "53/udp -> 0.0.0.0:5353"]
    assert port_lines(found, "80") == ["0.0.0.0:8080", "127.0.0.1:8081"]
    assert port_lines(found, "53/udp") == ["0.0.0.0:5353"]
    assert port_lines(found, "53") == []
    with pytest.raises(InvalidArgument, match="expected PORT"):
        port_lines(found, "80/icmp")
    assert ports_map(found, [(443, "tcp"), (80, "tcp")]) == {
        "443/tcp": None,
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                   {"HostIp": "127.0.0.1", "HostPort": "8081"}],
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}]}


def test_ledger_name_round_trip() -> None:
    for text in ("0.0.0.0:8080->80/tcp", "[::1]:53->53/udp"):
        found = port(text)
        assert PublishedPort.from_ledger_name(found.ledger_name) == found
        assert found.docker_text() == text


def test_overlap_rules() -> None:
    wide = port("0.0.0.0:8080->80/tcp")
    local = port("127.0.0.1:8080->80/tcp")
    assert wide.overlaps("tcp", "127.0.0.1", 8080)
    assert local.overlaps("tcp", "0.0.0.0", 8080)
    assert not local.overlaps("tcp", "10.0.0.1", 8080)
    assert not wide.overlaps("udp", "0.0.0.0", 8080)
    assert not wide.overlaps("tcp", "0.0.0.0", 8081)


def test_choose_fixed_ports_and_holders() -> None:
    held = {("tcp", 8080): "container abc"}

    def holder_of(protocol: str, ip: str, number: int) -> str | None:
        return held.get((protocol, number))

    got = choose(parse_publish("8081:80") + parse_publish("127.0.0.1:8080:80/udp"),
                 holder_of, lambda: (40000, 40010))
    assert [p.docker_text() for p in got] == ["0.0.0.0:8081->80/tcp",
                                              "127.0.0.1:8080->80/udp"]
    with pytest.raises(PortTaken) as caught:
        choose(parse_publish("8080:80"), holder_of, lambda: (40000, 40010))
    assert caught.value.message() == "0.0.0.0:8080/tcp is already in use by container abc"
    # the same host port twice in one request
    with pytest.raises(PortTaken, match="this container"):
        choose(parse_publish("9000:80") + parse_publish("9000:81"), holder_of, lambda: (1, 2))


def test_choose_ephemeral_ports_skip_held_ones_and_run_out_clearly() -> None:
    held = {40000, 40001, 40003}

    def holder_of(protocol: str, ip: str, number: int) -> str | None:
        return "x" if number in held else None

    got = choose(parse_publish("80-81"), holder_of, lambda: (40000, 40004))
    assert [p.host_port for p in got] == [40002, 40004]
    got = choose(parse_publish("9000-9003:80"), lambda *a: "x" if a[2] < 9003 else None,
                 lambda: (1, 2))
    assert [p.host_port for p in got] == [9003]
    spread = choose(parse_publish("80"), holder_of, lambda: (40000, 40004), start=4)
    assert [p.host_port for p in spread] == [40004]
    with pytest.raises(PortTaken) as caught:
        choose(parse_publish("80-83"), holder_of, lambda: (40000, 40004))
    assert caught.value.message() == \
        "no free host port for 82/tcp on 0.0.0.0 (all of 40000-40004 are in use)"


def test_choose_reads_the_local_range_only_for_a_port_without_host_port() -> None:
    """The kernel's ip_local_port_range is a /proc/sys/net/ipv4 lookup whose cost grows with
    the containers (kernel/procfs.py): fixed ports and host ranges never ask for it."""
    asked: list[int] = []

    def local_range() -> tuple[int, int]:
        asked.append(1)
        return 40000, 40004

    choose(parse_publish("8080-8087:80-87") + parse_publish("9000-9003:90"),
           lambda *a: None, local_range)
    assert asked == []
    choose(parse_publish("80"), lambda *a: None, local_range)
    assert asked == [1]
