"""ketch's Go text/template (ketch.cli.gotemplate) and podman's --format rules (ketch.cli.report).

The language is checked twice: against expectations written from Go's documentation, and
differentially against podman 4.3 itself, whose ``version --format`` runs any template over a
fixed struct (so every template whose result does not depend on the data compares 1:1)."""

from __future__ import annotations

import json
import subprocess

import pytest

from ketch.cli.gotemplate import GoStruct, GoTime, Template, TemplateError, go_float, go_sprintf
from ketch.cli.report import Formatter, normalize, split_camel_case, tabwrite


def render(source: str, data=None) -> str:
    return Template(source, "t").execute(data)


@pytest.mark.parametrize("source, data, expected", [
    ("{{.A}}", {"A": 1}, "1"),
    ("{{.A.B}}", {"A": {"B": "x"}}, "x"),
    ("{{.Missing}}", {"A": 1}, "<no value>"),
    ("{{- .A -}} | {{- .A }}", {"A": "x"}, "x|x"),
    ("{{/* comment */}}a", None, "a"),
    ("{{if .A}}yes{{else}}no{{end}}", {"A": ""}, "no"),
    ("{{if eq .A 1}}one{{else if eq .A 2}}two{{else}}many{{end}}", {"A": 2}, "two"),
    ("{{range .L}}[{{.}}]{{end}}", {"L": ["a", "b"]}, "[a][b]"),
    ("{{range $i, $v := .L}}{{$i}}={{$v}} {{end}}", {"L": ["a", "b"]}, "0=a 1=b "),
    ("{{range $k, $v := .M}}{{$k}}:{{$v}};{{end}}", {"M": {"b": 2, "a": 1}}, "a:1;b:2;"),
    ("{{range .L}}{{.}}{{else}}empty{{end}}", {"L": []}, "empty"),
    ("{{range .L}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}}", {"L": [1, 2, 3]}, "1"),
    ("{{range .L}}{{if eq . 2}}{{continue}}{{end}}{{.}}{{end}}", {"L": [1, 2, 3]}, "13"),
    ("{{with .A}}{{.}}{{else}}none{{end}}", {"A": ""}, "none"),
    ("{{$x := .A}}{{$x}}{{$x = 2}}{{$x}}", {"A": 1}, "12"),
    ("{{.L}} {{.M}} {{.B}} {{.N}}", {"L": [1, "a"], "M": {"k": "v"}, "B": True, "N": None}, "[1 a] map[k:v] true <nil>"),
    ("{{json .}}", {"a": [1, "x<"]}, '{"a":[1,"x<"]}'),
    ("{{upper .A}} {{lower .A}} {{title \"a b-c\"}}", {"A": "Ab"}, "AB ab A B-C"),
    ("{{join (split .A \",\") \"+\"}}", {"A": "x,y"}, "x+y"),
    ("{{truncate .A 3}}|{{pad .A 1 2}}|", {"A": "abcdef"}, "abc| abcdef  |"),
    ("{{len .L}} {{index .L 1}} {{index .M \"k\"}} {{slice .S 1 3}}", {"L": [1, 2], "M": {"k": 5}, "S": "abcd"},
     "2 2 5 bc"),
    ("{{printf \"%-5s|%5d|%.2f|%q|%v|%x\" \"a\" 42 3.14159 \"q\" .L 255}}", {"L": [1]},
     "a    |   42|3.14|\"q\"|[1]|ff"),
    ("{{print 1 2 \"a\" \"b\" 3}}", None, "1 2ab3"),
    ("{{println \"a\" 1}}", None, "a 1\n"),
    ("{{and 1 0 2}} {{or 0 \"\" \"x\"}} {{not 0}}", None, "0 x true"),
    ("{{.A | printf \"<%s>\"}}", {"A": "x"}, "<x>"),
    ("{{define \"T\"}}[{{.}}]{{end}}{{template \"T\" .A}}", {"A": "x"}, "[x]"),
    ("{{(index .L 0).Name}}", {"L": [{"Name": "n"}]}, "n"),
    ("{{1e6}} {{0.5}} {{1234567.0}}", None, "1e+06 0.5 1.234567e+06"),
])
def test_the_language(source, data, expected):
    assert render(source, data) == expected


@pytest.mark.parametrize("source, message", [
    ("{{.A", "unclosed action"),
    ("{{if .A}}x", "unexpected EOF"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{nope .A}}", 'function "nope" not defined'),
    ("{{$x}}", "undefined variable"),
])
def test_parse_errors_are_go_s(source, message):
    with pytest.raises(TemplateError, match=message):
        Template(source, "t")


def test_structs_refuse_unknown_fields_and_methods_take_arguments():
    class Row:
        go_type = "containers.psReporter"
        ID = "abc"

        def Label(self, name):  # noqa: N802 - Go's name
            return {"k": "v"}[name]

    with pytest.raises(TemplateError, match="can't evaluate field Nope in type containers.psReporter"):
        render("{{.Nope}}", Row())
    assert render('{{.ID}} {{.Label "k"}}', Row()) == "abc v"
    struct = GoStruct({"A": 1, "B": "x"})
    assert render("{{.}}", struct) == "{1 x}"
    with pytest.raises(TemplateError, match="can't evaluate field C"):
        render("{{.C}}", struct)
    with pytest.raises(TemplateError, match="range can't iterate over"):
        render("{{range .}}x{{end}}", struct)


def test_printing_is_go_s():
    assert [go_float(v) for v in (1.0, 100000000.0, 0.00001, 123456.0, 1e21, -2.5)] == [
        "1", "1e+08", "1e-05", "123456", "1e+21", "-2.5"]
    assert go_sprintf("%05.1f|%+d|%t|%c|%%", 3.14159, 3, True, 65) == "003.1|+3|true|A|%"
    assert go_sprintf("%d %d", 1) == "1 %!d(MISSING)"
    assert str(GoTime.from_unix(0)).startswith("1970-01-01 00:00:00")


def test_tabwriter_is_go_s():
    """Go's own expectations (containers/common's formatter tests)."""
    text = "Identity\tValue\nc061a0839e\tone\nf10fc2e11057\ttwo\n1eb6fab5aa8f4b5cbfd3e66aa35e9b2a\tthree\n"
    assert tabwrite(text) == ("Identity                          Value\nc061a0839e                        one\n"
                              "f10fc2e11057                      two\n1eb6fab5aa8f4b5cbfd3e66aa35e9b2a  three\n")
    # a line without a tab ends the column blocks above it
    assert tabwrite("a\tb\nlonger-cell\tc\nplain\nx\ty\n") == \
        "a            b\nlonger-cell  c\nplain\nx           y\n"
    assert split_camel_case("CreatedAt") == ["Created", "At"] and split_camel_case("ImageID") == ["Image", "ID"]


def test_podman_s_format_rules():
    rows = [GoStruct({"ID": "c061a0839e", "Value": "one"}), GoStruct({"ID": "f10fc2e11057", "Value": "two"})]
    # a user's template runs once per item and ends with a newline; \t stays a tab
    assert Formatter("{{.ID}}\\t{{.Value}}", name="ps", default="").render(rows) == \
        "c061a0839e\tone\nf10fc2e11057\ttwo\n"
    # table: a header row from the field names, columns aligned; spaces separate columns too
    assert Formatter("table {{.ID}} {{.Value}}", name="ps", default="", headers={"ID": "container id"}).render(
        rows) == "CONTAINER ID  VALUE\nc061a0839e    one\nf10fc2e11057  two\n"
    # a template that ranges itself is not wrapped again
    assert Formatter("{{range .}}{{.ID}} {{end}}", name="ps", default="").render(rows) == "c061a0839e f10fc2e11057 \n"
    assert normalize("a\\nb") == "a\nb\n"
    assert Formatter(None, name="ps", default="{{.ID}}\t{{.Value}}", noheading=True).render(rows) == \
        "c061a0839e    one\nf10fc2e11057  two\n"


# The differential half: podman 4.3 (Debian) runs the same templates over its version struct.
PODMAN_CASES = [
    "{{.Client.Version}}", "{{ .Client.Os }}-{{.Client.OsArch}}", "{{- .Client.Os -}} x {{- .Client.Built -}}",
    "{{/* c */}}x", "{{if .Client.Built}}y{{else}}n{{end}}",
    '{{if eq .Client.Os "linux"}}L{{else if eq .Client.Os "x"}}X{{else}}O{{end}}',
    "{{with .Client}}{{.Version}}{{end}}", "{{with .Client.GitCommit}}c{{else}}none{{end}}",
    '{{range $i, $e := split "a,b,c" ","}}{{$i}}={{$e}};{{end}}', '{{range split "a,b,c" ","}}[{{.}}]{{end}}',
    '{{range $e := split "a,b,c" ","}}{{if eq $e "b"}}{{break}}{{end}}{{$e}}{{end}}',
    '{{join (split "a b c" " ") "-"}}', '{{upper .Client.Os}} {{lower "ABC"}} {{title "hello world foo-bar"}}',
    "{{truncate .Client.GoVersion 4}}", '{{pad "x" 2 3}}|', "{{json .Client}}", '{{json 1.5}} {{json "a<b>&"}}',
    '{{printf "%s-%d-%v-%t" "a" 3 .Client.Built true}}', '{{printf "%05d|%-5d|%+d|%x|%X|%o|%b|%c" 42 42 42 255 255 8 5 65}}',
    '{{printf "%.3s|%10.2f|%e|%g|%G" "abcdef" 3.14159 1234.5 0.000012 1e21}}', '{{printf "%d %d" 1}}',
    '{{printf "%d" "x"}}', '{{print 1 2 "a" "b" 3}}', '{{println "a" 1}}', '{{len "héllo"}}',
    '{{index (split "a,b,c" ",") 1}}', '{{slice "abcdef" 1 3}}', '{{and 1 0 2}} {{or 0 "" "x"}} {{not 0}}',
    '{{eq 1 1}} {{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}} {{eq "a" "b" "a"}}', "{{lt 1 \"a\"}}",
    '{{html "<a href=\'x\'>&"}} {{js "it\'s <x>"}} {{urlquery "a b&c"}}', '{{$x := "v"}}{{$x}}{{$x = "w"}}{{$x}}',
    "{{.Nope}}", "{{nope}}", "{{.Client.Version.Foo}}", '{{"quoted" | upper | printf "<%s>"}}',
    "{{'a'}} {{0x1F}} {{1_000}} {{-5}} {{1.5e3}}", "{{nil}}", '{{ index (split "a:b" ":") 5 }}', "{{if}}{{end}}",
    "{{end}}", '{{define "T"}}[{{.}}]{{end}}{{template "T" "arg"}}', '{{block "B" "z"}}<{{.}}>{{end}}',
    '{{printf "%6.2f%%" 12.345}}', "{{ .Client.Version }}\\t{{ .Client.Os }}", "line1\\nline2",
    "{{ 3 | printf \"%d-%d\" 2 }}", "{{ printf \"%v %v\" 1.0 100000000.0 }} {{ 0.1 }} {{ 1e-7 }} {{ 123456789.0 }}",
    '{{ index "abc" 1 }}', '{{ printf "%T" 1 }}', "{{ print 1.5 true nil }}", "{{ (.Client).Version }}",
]


@pytest.mark.peer
def test_templates_match_podman():
    raw = json.loads(subprocess.run(["podman", "version", "--format", "json"], capture_output=True, text=True,
                                    check=True).stdout)
    data = GoStruct({k: GoStruct(v) for k, v in raw.items()})
    mismatches = []
    for case in PODMAN_CASES:
        peer = subprocess.run(["podman", "version", "--format", case], capture_output=True, text=True)
        want = peer.stdout if peer.returncode == 0 else "ERROR"
        try:
            got = Template(normalize(case), "version").execute(data)
        except TemplateError:
            got = "ERROR"
        if got != want:
            mismatches.append((case, want, got))
    assert mismatches == []
