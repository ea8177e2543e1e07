"""tsubo.cli.gotemplate: the Go text/template subset ``--format`` takes, against what Go's
text/template (with Docker's functions) prints for the same template and data."""

from __future__ import annotations

import pytest

from tsubo.cli.gotemplate import format_inspected, render
from tsubo.errors import InvalidArgument

DATA = {
    "Id": "3f2a",
    "Name": "/web",
    "State": {"Status": "running", "Running": True, "Pid": 42, "ExitCode": 0},
    "Config": {"Env": ["A=1", "B=2"], "Cmd": ["sh", "-c", "echo hi"],
               "Labels": {"z": "last", "a": "first"}, "Entrypoint": None},
    "Mounts": [{"Destination": "/data"}, {"Destination": "/logs"}],
    "RestartCount": 0,
}


@pytest.mark.parametrize(("template", "expected"), [
    # fields, and Go's fmt of what they hold
    ("{{.State.Status}}", "running"),
    ("{{ .State.Pid }}", "42"),
    ("{{.State.Running}}", "true"),
    ("{{.Config.Cmd}}", "[sh -c echo hi]"),
    ("{{.Config.Labels}}", "map[a:first z:last]"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Nope}}", "<no value>"),
    ("{{.State.Nope}}", "<no value>"),
    ("id={{.Id}}", "id=3f2a"),
    # json: compact, in the record's order
    ("{{json .Config.Labels}}", '{"z":"last","a":"first"}'),
    ("{{json .Config.Cmd}}", '["sh","-c","echo hi"]'),
    ("{{json .State.Running}}", "true"),
    # index, len
    ('{{index .Config.Labels "a"}}', "first"),
    ("{{index .Config.Cmd 2}}", "echo hi"),
    ("{{(index .Mounts 1).Destination}}", "/logs"),
    ("{{len .Mounts}}", "2"),
    # range over lists and maps (sorted keys), with variables, and else
    ("{{range .Config.Env}}{{.}};{{end}}", "A=1;B=2;"),
    ("{{range $i, $m := .Mounts}}{{$i}}:{{$m.Destination}} {{end}}", "0:/data 1:/logs "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "a=first,z=last,"),
    ("{{range .Nope}}x{{else}}empty{{end}}", "empty"),
    ("{{range .Mounts}}{{$.Name}}{{.Destination}} {{end}}", "/web/data /web/logs "),
    # if / else if / else / with
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ('{{if eq .State.Status "exited"}}E{{else if eq .State.Status "running"}}R{{end}}', "R"),
    ("{{if .RestartCount}}restarted{{else}}never{{end}}", "never"),
    ("{{with .State}}{{.Status}}/{{.Pid}}{{end}}", "running/42"),
    ("{{with .Nope}}x{{else}}none{{end}}", "none"),
    ("{{if and .State.Running (eq .State.ExitCode 0)}}ok{{end}}", "ok"),
    ("{{if not .State.Running}}x{{else}}y{{end}}", "y"),
    # pipes and Docker's functions
    ("{{.Name | upper}}", "/WEB"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ('{{printf "%s has %d" .Name .State.Pid}}', "/web has 42"),
    ('{{split "a:b" ":"}}', "[a b]"),
    ("{{truncate .Id 2}}", "3f"),
    # trim markers and comments
    ("a {{- .Id -}} b", "a3f2ab"),
    ("{{/* a comment */}}x", "x"),
])
def test_render(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


@pytest.mark.parametrize(("template", "detail"), [
    ("{{", "unclosed action"),
    ("{{.State", "unclosed action"),
    ("{{if .X}}", "unexpected EOF: {{if}} without {{end}}"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{else}}", "unexpected {{else}}"),
    ("{{}}", "missing value for command"),
    ("{{nosuch .X}}", 'function "nosuch" not defined'),
    ("{{.X .Y}}", "can't give argument to non-function .X"),
    ("{{$x}}", "undefined variable '$x'"),
    ("{{index .Config.Cmd 9}}", "error calling index: index out of range: 9"),
    ("{{range .Name}}{{end}}", "range can't iterate over /web"),
])
def test_bad_templates_are_one_line_errors(template: str, detail: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        render(template, DATA)
    assert caught.value.detail == detail
    assert "\n" not in caught.value.message()


def test_format_inspected() -> None:
    records = [DATA, {**DATA, "Name": "/db"}]
    assert format_inspected(records, "{{.Name}}") == "/web\n/db\n"
    assert format_inspected([], "{{.Name}}") == ""
    assert format_inspected(records, "").startswith("[\n    {\n")
    assert format_inspected(records, "json") == format_inspected(records, "")


def test_nothing_is_evaluated_as_python() -> None:
    # attribute syntax that would mean something to Python means nothing here
    assert render("{{.__class__}}", DATA) == "<no value>"
    with pytest.raises(InvalidArgument):
        render("{{__import__}}", DATA)
