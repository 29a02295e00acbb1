"""The runtime's JSON (CPython's C scanner and encoder, without the json package) agrees with json."""

import json
import subprocess
import sys

import pytest

from ketch.runtime import leanjson

DOCUMENTS = ['{"a": [1, -2.5e3, "x\\u00e9\\n", true, false, null, {"b": {}}], "c": []}', " [ ] ", '"only"',
             "12345678901234567890", '{"nested": ' * 50 + "0" + "}" * 50]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_same_values_as_json(text):
    assert leanjson.loads(text) == json.loads(text)
    assert leanjson.loads(text.encode()) == json.loads(text)
    value = json.loads(text)
    assert leanjson.dumps(value) == json.dumps(value)


@pytest.mark.parametrize("text", ["{not json", '{"a": 1} trailing', "[1,", "", "NaN", '"\\x"', "[" * 100000])
def test_errors_are_value_errors(text):
    with pytest.raises(ValueError):
        leanjson.loads(text)


def test_unserializable_values_are_refused():
    with pytest.raises(TypeError):
        leanjson.dumps({"a": object()})


def test_the_runtime_start_path_imports_no_heavy_modules():
    """What a container start imports: none of the modules that cost milliseconds each (ctypes
    among them: the system calls are ketch._linux's), and no seccomp or terminal code a plain
    container does not use."""
    code = ("import sys; import ketch.cli.runtime, ketch.runtime.container, ketch.runtime.init; "
            "print(sorted(m for m in ('re', 'enum', 'json', 'typing', 'pathlib', 'socket', 'signal', "
            "'contextlib', 'traceback', 'argparse', 'dataclasses', 'ctypes', 'ketch.runtime.seccomp', "
            "'termios', 'fcntl', 'select', 'resource') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
