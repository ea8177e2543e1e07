"""The Dockerfile parser, variable substitution, instruction arguments, ``.dockerignore``
rules and the build cache's folder (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsubo.build.cache import BuildCache
from tsubo.build.context import IgnoreRules, pattern_regex
from tsubo.build.dockerfile import (
    expand,
    key_values,
    parse,
    parse_chmod,
    parse_duration,
    parse_healthcheck,
    parse_port,
    split_words,
    substitute,
)
from tsubo.errors import InvalidArgument


def test_continuations_comments_and_blank_lines() -> None:
    parsed = parse("FROM busybox\n"
                   "# a comment\n"
                   "\n"
                   "RUN echo one \\\n"
                   "  # a comment inside the instruction\n"
                   "  && echo two\n"
                   "run echo lower-case keyword\n")
    keywords = [instruction.keyword for instruction in parsed.instructions]
    assert keywords == ["FROM", "RUN", "RUN"]
    assert parsed.instructions[1].args == "echo one   && echo two"
    assert parsed.instructions[1].line == 4
    assert parsed.instructions[2].line == 7


def test_escape_and_syntax_directives() -> None:
    parsed = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN dir c:\\ `\n  /w\n")
    assert parsed.escape == "`"
    assert parsed.instructions[1].args == "dir c:\\   /w"
    assert len(parsed.notes) == 1 and "syntax=docker/dockerfile:1" in parsed.notes[0]
    # a directive after an instruction is a comment
    late = parse("FROM x\n# escape=`\nRUN a \\\n b\n")
    assert late.escape == "\\" and late.instructions[1].args == "a  b"


def test_exec_form_flags_and_heredocs() -> None:
    parsed = parse('FROM x\nCMD ["echo", "a b"]\nENTRYPOINT [not json\n'
                   "COPY --from=build --chown=1:2 a b /dst/\n"
                   "RUN <<EOF\necho one\necho two\nEOF\n"
                   "COPY <<-\"END\" /file\n\tcontent $X\n\tEND\n")
    cmd, entrypoint, copy, run, inline = parsed.instructions[1:]
    assert cmd.json == ["echo", "a b"]
    assert entrypoint.json is None and entrypoint.args == "[not json"
    assert copy.flags == {"from": "build", "chown": "1:2"} and copy.args == "a b /dst/"
    assert run.heredocs[0].name == "EOF" and run.heredocs[0].content == "echo one\necho two\n"
    assert inline.heredocs[0].content == "content $X\n" and inline.heredocs[0].quoted


@pytest.mark.parametrize(("text", "message"), [
    ("FROM x\nFROBNICATE y\n", "Dockerfile:2: unknown instruction FROBNICATE"),
    ("FROM x\nCOPY --frm=a b c\n", "COPY does not take --frm"),
    ("FROM x\nRUN <<EOF\necho\n", "heredoc <<EOF is not terminated"),
    ("# only a comment\n", "no instructions"),
    ("# escape=x\nFROM x\n", "escape must be"),
    ("FROM x\nSHELL sh -c\n", "SHELL needs the JSON form"),
])
def test_bad_lines_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    assert message in caught.value.message()
    assert "\n" not in caught.value.message()


def test_variables_quotes_and_words() -> None:
    env = {"A": "one", "EMPTY": "", "SPACED": "x y"}
    assert expand("$A-${A}_${MISSING:-dflt}${A:+set}${EMPTY:-e}", env) == "one-one_dfltsete"
    assert expand("'$A' \"$A\" \\$A", env) == "$A one $A"
    assert split_words('a "b c" d\\ e $SPACED', env) == ["a", "b c", "d e", "x y"]
    assert key_values('K=v L="two words" M=$A', env, "\\", "here", "ENV") == [
        ("K", "v"), ("L", "two words"), ("M", "one")]
    assert key_values("K value with spaces", env, "\\", "here", "ENV") == [
        ("K", "value with spaces")]
    with pytest.raises(InvalidArgument, match="needs KEY=VALUE"):
        key_values("=x", env, "\\", "here", "LABEL")
    with pytest.raises(InvalidArgument, match="unterminated"):
        split_words('"open', env)
    with pytest.raises(InvalidArgument, match="required"):
        expand("${MISSING:?required}", env)
    assert substitute("'$A' \"${A}\" \\$A $MISSING.", env) == "'one' \"one\" $A ."


def test_dockerignore_rules() -> None:
    rules = IgnoreRules("# comment\n*.log\n/build\n**/secret*\n!keep.log\ndocs/*.md\n")
    assert rules.excluded("a.log") and not rules.excluded("keep.log")
    assert rules.excluded("build") and rules.excluded("build/out/x")  # the dir's content
    assert rules.excluded("deep/down/secret.txt") and rules.excluded("secret")
    assert rules.excluded("docs/a.md") and not rules.excluded("docs/sub/a.md")
    assert not rules.excluded("sub/a.log")  # * does not cross /
    assert not IgnoreRules("").excluded("anything")
    assert pattern_regex("a/**/b").match("a/b") and pattern_regex("a/**/b").match("a/x/y/b")
    assert pattern_regex("[a-c]?").match("b1") and not pattern_regex("[!a-c]").match("a")


def test_instruction_arguments() -> None:
    assert parse_chmod("0750", "here") == 0o750 and parse_chmod("", "here") is None
    assert parse_port("80", "here") == "80/tcp" and parse_port("53/UDP", "here") == "53/udp"
    assert parse_port("8000-8010", "here") == "8000-8010/tcp"
    assert parse_duration("1m30s", "here") == 90_000_000_000
    assert parse_duration("250ms", "here") == 250_000_000
    for call in (lambda: parse_chmod("rwx", "here"), lambda: parse_chmod("17777", "here"),
                 lambda: parse_port("http", "here"), lambda: parse_duration("30", "here"),
                 lambda: parse_duration("5x", "here")):
        with pytest.raises(InvalidArgument):
            call()
    [check] = parse("FROM x\nHEALTHCHECK --interval=5s --retries=2 CMD [\"probe\", \"-q\"]\n"
                    ).instructions[1:]
    assert parse_healthcheck(check, "here") == {"Test": ["CMD", "probe", "-q"],
                                                "Interval": 5_000_000_000, "Retries": 2}
    [none] = parse("FROM x\nHEALTHCHECK NONE\n").instructions[1:]
    assert parse_healthcheck(none, "here") == {"Test": ["NONE"]}


def test_the_cache_folder(tmp_path: Path) -> None:
    cache = BuildCache(str(tmp_path))
    key = "ab" * 32
    assert cache.lookup(key) is None
    cache.record(key, "sha256:" + "cd" * 32, "2026-01-01T00:00:00Z")
    assert BuildCache(str(tmp_path)).lookup(key) == ("sha256:" + "cd" * 32,
                                                     "2026-01-01T00:00:00Z")
    cache.forget_recorded()
    assert cache.lookup(key) is None and list((tmp_path / "build-cache").iterdir()) == []
    with pytest.raises(ValueError):
        cache.lookup("../escape")
