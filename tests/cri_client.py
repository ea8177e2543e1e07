"""A minimal client of the Kubernetes CRI (runtime.v1), as a kubelet speaks it, for tests.

Only the calls and fields the CRI test uses, written from the CRI API reference
(k8s.io/cri-api, `pkg/apis/runtime/v1/api.proto`; the field numbers below are that file's).
No generated code: messages are encoded and decoded here with the protobuf wire format
(varints, length-delimited fields, maps as repeated key/value entries), and the calls go
through grpcio's generic unary calls with bytes in and out.

Encoding: `message(field, ...)` joins fields made by `string`, `varint`, `sub` and
`string_map`; empty and zero values are left out, as proto3 does.
Decoding: `fields(data)` maps each field number to the list of its values (ints for
varints, bytes for length-delimited fields); the `CRIClient` methods turn the few fields
the test reads into plain dicts.
"""

from __future__ import annotations

from typing import Any

import grpc

RUNTIME = "/runtime.v1.RuntimeService/"
IMAGES = "/runtime.v1.ImageService/"
#: ContainerState, PodSandboxState
CONTAINER_STATES = {0: "CREATED", 1: "RUNNING", 2: "EXITED", 3: "UNKNOWN"}
SANDBOX_STATES = {0: "READY", 1: "NOTREADY"}
#: NamespaceMode
POD, CONTAINER, NODE = 0, 1, 2

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


# ---------------------------------------------------------------------------------------------
# wire format


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64: two's complement in ten bytes
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def varint(number: int, value: int | bool) -> bytes:
    """An int32/int64/uint32/bool/enum field (nothing when zero)."""
    return _key(number, _VARINT) + _varint(int(value)) if value else b""


def length_delimited(number: int, data: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(data)) + data


def string(number: int, value: str) -> bytes:
    return length_delimited(number, value.encode()) if value else b""


def strings(number: int, values: list[str]) -> bytes:
    """A repeated string field (each element, even empty, is sent)."""
    return b"".join(length_delimited(number, v.encode()) for v in values)


def sub(number: int, data: bytes) -> bytes:
    """A sub-message field; sent even when empty (presence matters for messages)."""
    return length_delimited(number, data)


def string_map(number: int, entries: dict[str, str]) -> bytes:
    """map<string, string>: one entry message (key = 1, value = 2) per item."""
    return b"".join(sub(number, string(1, k) + string(2, v)) for k, v in entries.items())


def message(*parts: bytes) -> bytes:
    return b"".join(parts)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than ten bytes")


def fields(data: bytes) -> dict[int, list[Any]]:
    """Field number -> its values in order: int for varint/fixed, bytes for length-delimited."""
    out: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: Any
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == _LEN:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
            if pos > len(data):
                raise ValueError("truncated length-delimited field")
        elif wire_type in (_I64, _I32):
            width = 8 if wire_type == _I64 else 4
            value, pos = int.from_bytes(data[pos:pos + width], "little"), pos + width
        else:
            raise ValueError(f"unsupported wire type {wire_type} (field {number})")
        out.setdefault(number, []).append(value)
    return out


def signed(value: int, bits: int = 64) -> int:
    """A varint read back as int32/int64 (negative values come as two's complement)."""
    value &= (1 << 64) - 1
    value = value - (1 << 64) if value >> 63 else value
    return value if bits == 64 else (value + (1 << 31)) % (1 << 32) - (1 << 31)


def text(found: dict[int, list[Any]], number: int) -> str:
    return bytes(found.get(number, [b""])[-1]).decode()


def number_of(found: dict[int, list[Any]], number: int) -> int:
    return int(found.get(number, [0])[-1])


def submessage(found: dict[int, list[Any]], number: int) -> dict[int, list[Any]]:
    return fields(bytes(found.get(number, [b""])[-1]))


def read_map(found: dict[int, list[Any]], number: int) -> dict[str, str]:
    entries = (fields(bytes(raw)) for raw in found.get(number, []))
    return {text(entry, 1): text(entry, 2) for entry in entries}


# ---------------------------------------------------------------------------------------------
# messages the test sends


def namespace_options(pid: int) -> bytes:
    """NamespaceOption: network 1 and ipc 3 POD (the pod's), pid 2 as given: CONTAINER
    (a kubelet's default) or POD (`shareProcessNamespace: true`)."""
    return message(varint(1, POD), varint(2, pid), varint(3, POD))


def pod_sandbox_config(name: str, uid: str, namespace: str, *, cgroup_parent: str,
                       log_directory: str = "", hostname: str = "", pid: int = CONTAINER,
                       labels: dict[str, str] | None = None) -> bytes:
    """PodSandboxConfig: metadata (1: name 1, uid 2, namespace 3, attempt 4), hostname 2,
    log_directory 3, labels 6, linux 8 (LinuxPodSandboxConfig: cgroup_parent 1,
    security_context 2 (LinuxSandboxSecurityContext: namespace_options 1))."""
    metadata = message(string(1, name), string(2, uid), string(3, namespace))
    linux = message(string(1, cgroup_parent), sub(2, sub(1, namespace_options(pid))))
    return message(sub(1, metadata), string(2, hostname), string(3, log_directory),
                   string_map(6, labels or {}), sub(8, linux))


def container_config(name: str, image: str, command: list[str], *, args: tuple[str, ...] = (),
                     envs: dict[str, str] | None = None, log_path: str = "",
                     pid: int = CONTAINER) -> bytes:
    """ContainerConfig: metadata 1 (name 1), image 2 (ImageSpec: image 1), command 3,
    args 4, envs 6 (KeyValue: key 1, value 2), log_path 11, linux 15 (LinuxContainerConfig:
    security_context 2 (LinuxContainerSecurityContext: namespace_options 3)). Left out,
    the pid mode would be 0 = POD, not a kubelet's CONTAINER."""
    env = b"".join(sub(6, string(1, k) + string(2, v)) for k, v in (envs or {}).items())
    linux = sub(2, sub(3, namespace_options(pid)))
    return message(sub(1, string(1, name)), sub(2, string(1, image)), strings(3, command),
                   strings(4, list(args)), env, string(11, log_path), sub(15, linux))


# ---------------------------------------------------------------------------------------------
# the client


class CRIClient:
    """The calls of runtime.v1 RuntimeService/ImageService the test makes, over a unix
    socket; each returns the reply's fields the test reads (names as in the API)."""

    def __init__(self, socket: str, timeout: float = 60.0) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: bytes, timeout: float | None = None) -> bytes:
        """One unary call: bytes in, bytes out (no codegen, no serializers)."""
        rpc: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(method)
        reply = rpc(request, timeout=timeout or self.timeout)
        assert isinstance(reply, bytes)
        return reply

    def version(self) -> dict[str, str]:
        found = fields(self.call(RUNTIME + "Version", string(1, "v1")))
        return {"version": text(found, 1), "runtime_name": text(found, 2),
                "runtime_version": text(found, 3), "runtime_api_version": text(found, 4)}

    def image_status(self, image: str) -> dict[str, Any]:
        """ImageStatusResponse.image (Image: id 1, repo_tags 2, size 4); {} if unknown."""
        found = fields(self.call(IMAGES + "ImageStatus", sub(1, string(1, image))))
        if 1 not in found:
            return {}
        img = submessage(found, 1)
        return {"id": text(img, 1), "repo_tags": [bytes(t).decode() for t in img.get(2, [])],
                "size": number_of(img, 4)}

    def run_pod_sandbox(self, config: bytes, runtime_handler: str = "") -> str:
        found = fields(self.call(RUNTIME + "RunPodSandbox",
                                 message(sub(1, config), string(2, runtime_handler))))
        return text(found, 1)

    def pod_sandbox_status(self, sandbox_id: str) -> dict[str, Any]:
        """PodSandboxStatus: id 1, state 3, network 5 (ip 1, additional_ips 2),
        runtime_handler 9."""
        found = fields(self.call(RUNTIME + "PodSandboxStatus", string(1, sandbox_id)))
        status = submessage(found, 1)
        network = submessage(status, 5)
        return {"id": text(status, 1), "state": SANDBOX_STATES[number_of(status, 3)],
                "ip": text(network, 1), "runtime_handler": text(status, 9)}

    def create_container(self, sandbox_id: str, config: bytes, sandbox_config: bytes) -> str:
        request = message(string(1, sandbox_id), sub(2, config), sub(3, sandbox_config))
        return text(fields(self.call(RUNTIME + "CreateContainer", request)), 1)

    def start_container(self, container_id: str) -> None:
        self.call(RUNTIME + "StartContainer", string(1, container_id))

    def container_status(self, container_id: str) -> dict[str, Any]:
        """ContainerStatus: id 1, state 3, exit_code 7, reason 10, log_path 15."""
        found = fields(self.call(RUNTIME + "ContainerStatus", string(1, container_id)))
        status = submessage(found, 1)
        return {"id": text(status, 1), "state": CONTAINER_STATES[number_of(status, 3)],
                "exit_code": signed(number_of(status, 7), 32), "reason": text(status, 10),
                "log_path": text(status, 15)}

    def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 0
                  ) -> tuple[bytes, bytes, int]:
        """(stdout, stderr, exit_code) of ExecSync (request: container_id 1, cmd 2,
        timeout 3 in seconds)."""
        found = fields(self.call(RUNTIME + "ExecSync", message(
            string(1, container_id), strings(2, cmd), varint(3, timeout))))
        return (bytes(found.get(1, [b""])[-1]), bytes(found.get(2, [b""])[-1]),
                signed(number_of(found, 3), 32))

    def stop_container(self, container_id: str, timeout: int) -> None:
        self.call(RUNTIME + "StopContainer", string(1, container_id) + varint(2, timeout))

    def remove_container(self, container_id: str) -> None:
        self.call(RUNTIME + "RemoveContainer", string(1, container_id))

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self.call(RUNTIME + "StopPodSandbox", string(1, sandbox_id))

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.call(RUNTIME + "RemovePodSandbox", string(1, sandbox_id))
