"""Pure tests of the small wire-level modules: jsonwire, handshake framing over real pipes,
signal parsing, the error message format and the undo stack."""

from __future__ import annotations

import _signal
import errno
import json
import os
from collections.abc import Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tsubo import jsonwire
from tsubo.errors import (
    ChildFailed,
    InvalidArgument,
    InvalidJSON,
    NotFound,
    TeardownErrors,
    TsuboError,
    describe_errno,
    errno_name,
)
from tsubo.kernel.signals import parse_signal, signal_name
from tsubo.runtime import handshake
from tsubo.undo import UndoStack


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- jsonwire ---------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@pytest.mark.parametrize("value", [
    {"ociVersion": "1.2.0", "process": {"args": ["sh", "-c", "echo hi"]}},
    "h\u00e9llo \u65e5\u672c \U0001f600 \x00 \x1f \"quoted\" back\\slash",
    2**64 - 1,
    -(2**100),
    {"nested": {"deeper": [[], {}, [1, [2, [3, {"x": None}]]]]}},
    [True, False, None, 0, -1, 1.5, -0.0, 1e300],
    "",
    {},
    [],
])
def test_dumps_matches_json_dumps_byte_for_byte(value: object) -> None:
    text = jsonwire.dumps(value)
    assert text == compact(value)
    assert jsonwire.loads(text) == value


def test_dumps_escapes_non_ascii_like_json() -> None:
    assert jsonwire.dumps("\u00e9\U0001f600") == '"\\u00e9\\ud83d\\ude00"'


def test_dumps_turns_tuples_into_arrays_and_keys_into_strings() -> None:
    assert jsonwire.dumps((1, 2)) == "[1,2]"
    assert jsonwire.dumps({1: "a", None: "b", 1.5: "c", False: "d"}) == (
        '{"1":"a","null":"b","1.5":"c","false":"d"}')


def test_dumps_refuses_nan_and_unserialisable_values() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        jsonwire.dumps(float("nan"))
    with pytest.raises(ValueError, match="not JSON compliant"):
        jsonwire.dumps({"a": float("inf")})
    with pytest.raises(TypeError, match="cannot serialise set to JSON"):
        jsonwire.dumps({"a": {1, 2}})


def test_dumps_detects_circular_structures() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"[Cc]ircular"):
        jsonwire.dumps(loop)


def test_loads_accepts_bytes_and_surrounding_whitespace() -> None:
    assert jsonwire.loads(b' \t\n{"\xc3\xa9": [1, 2]}\r\n ') == {"\u00e9": [1, 2]}
    assert jsonwire.loads("  12345678901234567890123  ") == 12345678901234567890123


def test_loads_keeps_the_last_of_duplicate_keys_like_json() -> None:
    assert jsonwire.loads('{"a":1,"a":2}') == {"a": 2}


@pytest.mark.parametrize("text", [
    "", "   ", "{", '{"a":', "[1,", '"unterminated', "tru", '{"a" 1}', "[1,]", "{'a':1}",
])
def test_loads_rejects_truncated_or_malformed_input(text: str) -> None:
    with pytest.raises(ValueError):
        jsonwire.loads(text)


@pytest.mark.parametrize(("text", "offset"), [
    ("1 2", 2), ('{"a":1}x', 7), ("[] []", 3), ('"a"\n"b"', 4),
])
def test_loads_rejects_extra_data_naming_the_offset(text: str, offset: int) -> None:
    with pytest.raises(ValueError, match=f"extra data after the JSON value at offset {offset}$"):
        jsonwire.loads(text)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a":NaN}', "[1,Infinity]"])
def test_loads_rejects_non_standard_constants(text: str) -> None:
    with pytest.raises(ValueError):
        jsonwire.loads(text)


@given(JSON_VALUES)
def test_property_dumps_is_json_dumps_and_round_trips(value: object) -> None:
    text = jsonwire.dumps(value)
    assert text == compact(value)
    assert jsonwire.loads(text) == value
    assert jsonwire.loads(text.encode()) == value


@given(JSON_VALUES, st.sampled_from(["", " ", "\n", "\t \r\n"]))
def test_property_loads_agrees_with_json_loads(value: object, pad: str) -> None:
    text = pad + json.dumps(value, indent=1, ensure_ascii=False) + pad
    assert jsonwire.loads(text) == json.loads(text)


@given(st.text(max_size=20))
def test_property_loads_fails_exactly_when_json_loads_does(text: str) -> None:
    assume("NaN" not in text and "Infinity" not in text)  # only json accepts these
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            jsonwire.loads(text)
    else:
        assert jsonwire.loads(text) == expected


# --- jsonwire: the limits (depth, size) -------------------------------------------------------


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def nest(levels: int, *, kinds: str = "[{") -> str:
    """A document *levels* deep, alternating arrays and objects (``{"k": [...]}``)."""
    opened = [kinds[i % len(kinds)] for i in range(levels)]
    text = "".join("[" if kind == "[" else '{"k":' for kind in opened)
    return text + "0" + "".join("]" if kind == "[" else "}" for kind in reversed(opened))


@pytest.mark.parametrize("kinds", ["[", "{", "[{"])
def test_loads_takes_64_levels_and_refuses_65(kinds: str) -> None:
    assert depth(jsonwire.loads(nest(64, kinds=kinds))) == 64
    with pytest.raises(InvalidJSON) as caught:
        jsonwire.loads(nest(65, kinds=kinds), "state file /run/x/state.json")
    assert str(caught.value) == "read state file /run/x/state.json: nested deeper than 64 levels"


@pytest.mark.parametrize("document", [
    b"[" * 100_000 + b"]" * 100_000,  # the attack: 200 KB, a RecursionError in the parser
    b"[" * 100_000,  # and unclosed
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b"[" * 100 + b'"\\\\"' + b"]" * 100,  # an escaped backslash does not hide the depth
    b'[["' + b"]" * 70 + b'",' + b"[" * 70 + b"]" * 72,  # nor brackets in a string
])
def test_deep_documents_are_one_line_never_a_recursion_error(document: bytes) -> None:
    with pytest.raises(InvalidJSON) as caught:
        jsonwire.loads(document, "manifest.json")
    assert caught.value.message() == "read manifest.json: nested deeper than 64 levels"


def test_brackets_and_escapes_inside_strings_are_not_structure() -> None:
    text = json.dumps({"a": "[" * 200, "b": "]" * 200 + "{" * 90, "c": ['\\"[[[' * 40],
                       "d": [[[["\"]]]]"]]]], "e": "\u005b" * 100})
    assert jsonwire.loads(text) == json.loads(text)
    assert depth(json.loads(text)) == 5  # {"d": [[[[...]]]]}
    assert not jsonwire.nested_deeper_than(text.encode(), 5)
    assert jsonwire.nested_deeper_than(text.encode(), 4)


@given(JSON_VALUES, st.integers(min_value=0, max_value=6), st.booleans(), st.booleans())
def test_property_the_depth_check_is_exact(value: object, limit: int, indent: bool,
                                           ascii_only: bool) -> None:
    text = json.dumps(value, indent=1 if indent else None, ensure_ascii=ascii_only)
    assert jsonwire.nested_deeper_than(text.encode(), limit) == (depth(value) > limit)


@given(st.recursive(st.text(alphabet='[]{}"\\,: ab\n', max_size=8),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), children,
                                      max_size=4), max_leaves=40),
       st.integers(min_value=0, max_value=8))
def test_property_the_depth_check_is_exact_with_hostile_strings(value: object,
                                                                limit: int) -> None:
    text = json.dumps(value).encode()
    assert jsonwire.nested_deeper_than(text, limit) == (depth(value) > limit)


def test_size_limit() -> None:
    assert jsonwire.loads(b"[" + b" " * 98 + b"]", max_bytes=100) == []
    with pytest.raises(InvalidJSON) as caught:
        jsonwire.loads(b"[" + b" " * 99 + b"]", "index.json", max_bytes=100)
    assert str(caught.value) == "read index.json: larger than 100 bytes"
    with pytest.raises(InvalidJSON, match="larger than 10 bytes"):  # UTF-8 bytes, not chars
        jsonwire.loads('"' + "\u00e9" * 5 + '"', max_bytes=10)
    assert jsonwire.loads('"' + "\u00e9" * 4 + '"', max_bytes=10) == "\u00e9" * 4
    with pytest.raises(InvalidJSON, match=f"larger than {jsonwire.MAX_BYTES} bytes"):
        jsonwire.loads(b" " * (jsonwire.MAX_BYTES + 1))


def test_errors_are_typed_one_line_and_still_value_errors() -> None:
    for text, detail in [(b"\xff", "not valid UTF-8 at byte 0"),
                         (b"", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
                         (b"[NaN]", "not valid JSON: invalid JSON constant NaN"),
                         (b"[1] [2]", "extra data after the JSON value at offset 4")]:
        with pytest.raises(InvalidJSON) as caught:
            jsonwire.loads(text, "config.json", operation="load config")
        error = caught.value
        assert isinstance(error, InvalidArgument) and isinstance(error, ValueError)
        assert (error.operation, error.object, error.detail) == ("load config",
                                                                 "config.json", detail)
        assert "\n" not in str(error)


def test_the_reader_is_not_slower_than_its_check_allows() -> None:
    """A coarse guard (the numbers are in bench/json_reader.py): the limits cost a fraction
    of the parse on a config.json, not a multiple of it."""
    import time

    from tsubo.oci.default_spec import default_spec

    config = json.dumps(default_spec()).encode()
    decoder = json.JSONDecoder()

    def best(call: object, rounds: int = 5, parses: int = 300) -> float:
        assert callable(call)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(parses):
                call()
            times.append(time.perf_counter() - start)
        return min(times)

    bare = best(lambda: decoder.raw_decode(config.decode()))
    ours = best(lambda: jsonwire.loads(config))
    assert ours < 3 * bare, (ours, bare)


# --- handshake --------------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    fds = {read_fd, write_fd}
    yield read_fd, write_fd
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def test_send_then_receive_one_message(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, handshake.PID, "4242")
    assert handshake.Channel(read_fd, "init").receive() == ("pid", ["4242"])


def test_message_framing_is_one_line_with_unit_separators(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, "ready", "a", "b c")
    assert os.read(read_fd, 100) == b"ready\x1fa\x1fb c\n"


def test_newlines_in_fields_are_flattened(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, handshake.HOOKS_DUE, "line one\nline two")
    assert handshake.Channel(read_fd, "init").receive() == ("hooks", ["line one line two"])


def test_several_messages_in_one_read_are_split(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, handshake.USERNS_READY)
    handshake.send(write_fd, handshake.PID, "7")
    handshake.send(write_fd, handshake.READY)
    channel = handshake.Channel(read_fd, "init")
    assert channel.receive() == ("userns", [])
    assert channel.receive() == ("pid", ["7"])
    assert channel.receive() == ("ready", [])


def test_a_message_split_across_writes_is_reassembled(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"pid\x1f12")
    channel = handshake.Channel(read_fd, "init")
    os.write(write_fd, b"34\n")
    assert channel.receive() == ("pid", ["1234"])


def test_receive_returns_none_at_end_of_file(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, handshake.READY)
    os.close(write_fd)
    channel = handshake.Channel(read_fd, "init")
    assert channel.receive() == ("ready", [])
    assert channel.receive() is None


def test_error_frame_is_re_raised_as_child_failed(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send_error(write_fd, TsuboError("mount proc", "on /proc", errno=errno.EPERM,
                                              detail="in the new namespace", hint="check"))
    with pytest.raises(ChildFailed) as caught:
        handshake.Channel(read_fd, "init").receive()
    error = caught.value
    assert (error.errno, error.operation, error.object, error.detail, error.hint) == (
        errno.EPERM, "mount proc", "on /proc", "in the new namespace", "check")
    assert str(error) == "mount proc on /proc: in the new namespace: EPERM (hint: check)"


def test_os_error_frame_keeps_errno_and_file_name(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send_error(write_fd, FileNotFoundError(errno.ENOENT, "No such file", "/sbin/x"))
    with pytest.raises(ChildFailed) as caught:
        handshake.Channel(read_fd, "init").receive()
    assert caught.value.errno == errno.ENOENT
    assert caught.value.operation == "container setup"
    assert caught.value.object == "/sbin/x"
    assert str(caught.value) == "container setup /sbin/x: ENOENT"  # errno says it once


def test_other_exception_frame_names_the_type(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send_error(write_fd, RuntimeError("boom\nsecond line"))
    with pytest.raises(ChildFailed) as caught:
        handshake.Channel(read_fd, "init").receive()
    assert caught.value.errno == 0
    assert caught.value.detail == "RuntimeError: boom second line"


def test_send_error_never_raises_on_a_closed_pipe() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        handshake.send_error(write_fd, RuntimeError("x"))  # EPIPE is swallowed
    finally:
        os.close(write_fd)


def test_expect_returns_fields_of_the_expected_kind(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, handshake.PID, "99")
    assert handshake.Channel(read_fd, "init").expect(handshake.PID, "wait for pid") == ["99"]


def test_expect_mismatch_says_expected_and_received(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, handshake.HOOKS_DUE)
    with pytest.raises(ChildFailed) as caught:
        handshake.Channel(read_fd, "web").expect(handshake.READY, "wait for init ready")
    assert caught.value.object == "web"
    assert str(caught.value) == (
        "create container web: wait for init ready: expected 'ready', received 'hooks'")


def test_expect_at_end_of_file_says_what_it_waited_for(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(write_fd)
    with pytest.raises(ChildFailed, match=(
            r"wait for pid: the container's setup process exited before sending 'pid'$")):
        handshake.Channel(read_fd, "web").expect(handshake.PID, "wait for pid")


def test_wait_for_resume_in_the_child(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    handshake.send(write_fd, handshake.MAPPED, "ok")
    assert handshake.wait_for_resume(read_fd, handshake.MAPPED) == ["ok"]
    handshake.send(write_fd, handshake.RESUME)
    with pytest.raises(TsuboError, match="expected 'mapped', received 'resume'"):
        handshake.wait_for_resume(read_fd, handshake.MAPPED)
    os.close(write_fd)
    with pytest.raises(TsuboError, match="the runtime exited before sending 'resume'"):
        handshake.wait_for_resume(read_fd, handshake.RESUME)


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\n\x1f",
                                              exclude_categories=["Cs"]),
                                max_size=30), max_size=4))
def test_property_fields_survive_the_pipe(fields: list[str]) -> None:
    read_fd, write_fd = os.pipe()
    try:
        handshake.send(write_fd, handshake.PID, *fields)
        assert handshake.Channel(read_fd, "init").receive() == ("pid", fields)
    finally:
        os.close(read_fd)
        os.close(write_fd)


# --- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "number"), [
    ("TERM", 15), ("SIGTERM", 15), ("term", 15), ("sigkill", 9), ("KILL", 9), ("9", 9),
    ("15", 15), ("HUP", 1), ("SIGUSR1", 10), ("usr2", 12), ("CHLD", 17), ("WINCH", 28),
    ("IOT", 6), ("1", 1),
])
def test_parse_signal_names_and_numbers(text: str, number: int) -> None:
    assert parse_signal(text) == number


def test_parse_signal_real_time_signals() -> None:
    rtmin, rtmax = _signal.SIGRTMIN, _signal.SIGRTMAX
    assert parse_signal("RTMIN") == rtmin
    assert parse_signal("SIGRTMIN") == rtmin
    assert parse_signal("RTMIN+3") == rtmin + 3
    assert parse_signal("sigrtmin+0") == rtmin
    assert parse_signal("RTMAX") == rtmax
    assert parse_signal("RTMAX-1") == rtmax - 1
    assert parse_signal(f"RTMIN+{rtmax - rtmin}") == rtmax
    assert parse_signal(str(_signal.NSIG - 1)) == _signal.NSIG - 1


@pytest.mark.parametrize("text", [
    "0", "65", "999", "-9", "", "SIG", "NOPE", "SIGFOO", "RTMIN-1", "RTMAX+1", "RTMIN+x",
    "RTMIN+99", "SIG_IGN", "SIG_DFL", "9.0", " 9",
])
def test_parse_signal_refuses_bad_ones(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_signal(text)
    assert caught.value.operation == "parse signal"
    assert caught.value.object == text


def test_parse_signal_number_out_of_range_says_the_range() -> None:
    with pytest.raises(InvalidArgument, match=f"must be 1..{_signal.NSIG - 1}$"):
        parse_signal("0")


def test_parse_signal_unicode_digits_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        parse_signal("\u00b2")


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=12))
def test_property_parse_signal_returns_a_signal_or_invalid_argument(text: str) -> None:
    try:
        number = parse_signal(text)
    except InvalidArgument:
        return
    assert 1 <= number < _signal.NSIG


@pytest.mark.parametrize("number", [1, 2, 6, 9, 15, 17, 29])
def test_signal_name_round_trips(number: int) -> None:
    name = signal_name(number)
    assert name.startswith("SIG")
    assert name not in ("SIGIOT", "SIGPOLL", "SIGCLD")
    assert parse_signal(name) == number


def test_signal_name_of_unknown_number() -> None:
    assert signal_name(_signal.SIGRTMIN + 1) == str(_signal.SIGRTMIN + 1)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "text"), [
    (TsuboError("create container"), "create container"),
    (TsuboError("create container", '"web"'), 'create container "web"'),
    (TsuboError("mount proc", "on /proc", errno=errno.EPERM),
     "mount proc on /proc: EPERM"),
    (TsuboError("mount proc", "on /proc", errno=errno.EPERM, detail="in the namespace",
                hint="run as root"),
     "mount proc on /proc: in the namespace: EPERM (hint: run as root)"),
    (TsuboError("load config", detail="bad"), "load config: bad"),
    (TsuboError("x", hint="try y"), "x (hint: try y)"),
    (TsuboError("x", "y", errno=99999), "x y: 99999"),
])
def test_error_message_format(error: TsuboError, text: str) -> None:
    assert error.message() == text
    assert str(error) == text


def test_error_fields_and_exit_code() -> None:
    error = NotFound("load container", "web", errno=errno.ENOENT, detail="gone", hint="h")
    assert (error.operation, error.object, error.errno, error.detail, error.hint) == (
        "load container", "web", errno.ENOENT, "gone", "h")
    assert error.exit_code == 1
    assert isinstance(error, TsuboError)


def test_from_os_error_keeps_errno_and_class() -> None:
    error = NotFound.from_os_error("open", "/x", FileNotFoundError(errno.ENOENT, "nope"),
                                   hint="create it")
    assert type(error) is NotFound
    assert str(error) == "open /x: ENOENT (hint: create it)"
    assert TsuboError.from_os_error("open", "/x", OSError("no errno")).errno == 0


def test_teardown_errors_lists_all() -> None:
    error = TeardownErrors("delete container", "web",
                           [TsuboError("remove cgroup", "/a", errno=errno.EBUSY),
                            OSError("plain")])
    assert len(error.errors) == 2
    assert str(error) == "delete container web: remove cgroup /a: EBUSY; plain"


def test_errno_helpers() -> None:
    assert errno_name(errno.EPERM) == "EPERM"
    assert errno_name(123456) == "123456"
    assert describe_errno(errno.ENOENT) == "ENOENT (No such file or directory)"


# --- undo -------------------------------------------------------------------------------------


def test_undo_runs_in_reverse_order_on_error() -> None:
    done: list[str] = []
    with pytest.raises(TsuboError), UndoStack("create container", "web") as undo:
        undo.push(lambda: done.append("first"))
        undo.push(lambda: done.append("second"))
        undo.push(lambda: done.append("third"))
        raise TsuboError("mount", "/proc")
    assert done == ["third", "second", "first"]


def test_undo_commit_keeps_everything() -> None:
    done: list[str] = []
    with pytest.raises(RuntimeError), UndoStack("create container", "web") as undo:
        undo.push(lambda: done.append("undo"))
        undo.commit()
        raise RuntimeError("after commit")
    assert done == []


def test_undo_leaving_without_commit_unwinds() -> None:
    """An early return (or break) without commit() is not a success: undone (issue 9)."""
    done: list[str] = []

    def setup(finish: bool) -> None:
        with UndoStack("create container", "web") as undo:
            undo.push(lambda: done.append("undo"))
            if not finish:
                return
            undo.commit()

    setup(finish=False)
    assert done == ["undo"]
    setup(finish=True)
    assert done == ["undo"]


def test_undo_keeps_going_and_attaches_cleanup_errors_to_tsubo_error() -> None:
    done: list[str] = []

    def failing(text: str) -> None:
        raise TsuboError("remove", text, errno=errno.EBUSY)

    with pytest.raises(TsuboError) as caught, UndoStack("create container", "web") as undo:
        undo.push(lambda: done.append("first"))
        undo.push(lambda: failing("/a"))
        undo.push(lambda: failing("/b"))
        raise TsuboError("mount proc", "on /proc", errno=errno.EPERM, detail="denied")
    assert done == ["first"]
    error = caught.value
    assert [str(e) for e in error.cleanup_errors] == [  # type: ignore[attr-defined]
        "remove /b: EBUSY", "remove /a: EBUSY"]
    assert error.detail == "denied; cleanup also failed: remove /b: EBUSY; remove /a: EBUSY"
    assert str(error) == ("mount proc on /proc: denied; cleanup also failed: "
                          "remove /b: EBUSY; remove /a: EBUSY: EPERM")
    assert error.operation == "mount proc"  # the original error still says what failed first


def test_undo_cleanup_error_without_original_detail() -> None:
    def failing() -> None:
        raise OSError("disk on fire")

    with pytest.raises(TsuboError) as caught, UndoStack("create container", "web") as undo:
        undo.push(failing)
        raise TsuboError("spawn", "init")
    assert str(caught.value) == "spawn init: cleanup also failed: disk on fire"


def test_undo_other_exceptions_get_cleanup_errors_but_keep_their_message() -> None:
    def failing() -> None:
        raise OSError("oops")

    with pytest.raises(KeyError) as caught, UndoStack("create container", "web") as undo:
        undo.push(failing)
        raise KeyError("original")
    assert str(caught.value) == "'original'"
    assert [str(e) for e in caught.value.cleanup_errors] == ["oops"]  # type: ignore[attr-defined]


def test_undo_without_cleanup_errors_leaves_message_alone() -> None:
    with pytest.raises(TsuboError) as caught, UndoStack("create container", "web") as undo:
        undo.push(lambda: None)
        raise TsuboError("spawn", "init", detail="x")
    assert str(caught.value) == "spawn init: x"
    assert not hasattr(caught.value, "cleanup_errors")


def test_unwind_returns_errors_and_empties_the_stack() -> None:
    undo = UndoStack("op", "obj")
    problem = ValueError("bad")

    def failing() -> None:
        raise problem

    undo.push(failing)
    undo.push(lambda: None)
    assert undo.unwind() == [problem]
    assert undo.unwind() == []
