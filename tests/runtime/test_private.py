"""CPython's private modules on the start path: used only on verified versions, and a fallback to
the public modules (KETCH_NO_FAST_PATHS=1) that gives the same results."""

import hashlib
import json
import os
import subprocess
import sys

from ketch.runtime import leanjson, private

SAMPLES = ['{"a": [1, 2.5, "x\\u00e9", null, true], "b": {}}', "[]", '"plain"', "  {\"n\": -0.5e3}  "]
BAD = ['{"a": 1', "NaN", "[1, Infinity]", "{} x", "", "[" * 100000]

PROBE = """
import json, sys
from ketch.runtime import leanjson, private
samples, bad = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"enabled": private.ENABLED, "loads": [leanjson.loads(s) for s in samples],
       "dumps": [leanjson.dumps(leanjson.loads(s)) for s in samples], "bad": []}
for text in bad:
    try:
        leanjson.loads(text)
        out["bad"].append("accepted")
    except ValueError:
        out["bad"].append("ValueError")
out["sha"] = private.sha256()(b"ketch").hexdigest()
out["signal"] = [int(private.signal_module.SIGKILL), private.signal_module.NSIG]
out["module"] = private.signal_module.__name__
print(json.dumps(out))
"""


def _probe(fallback: bool) -> dict:
    env = dict(os.environ)
    env.pop("KETCH_NO_FAST_PATHS", None)
    if fallback:
        env["KETCH_NO_FAST_PATHS"] = "1"
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(SAMPLES), json.dumps(BAD)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_fast_path_runs_here_and_the_fallback_gives_the_same():
    fast, fallback = _probe(False), _probe(True)
    assert fast["enabled"] is (sys.version_info[:2] in private.VERIFIED)
    assert fallback["enabled"] is False and fallback["module"] == "signal"
    if fast["enabled"]:
        assert fast["module"] == "_signal"  # the private modules really are what runs on this Python
    for key in ("loads", "dumps", "bad", "sha", "signal"):
        assert fast[key] == fallback[key], key
    assert fast["loads"] == [json.loads(s) for s in SAMPLES]
    assert fast["bad"] == ["ValueError"] * len(BAD)
    assert fast["sha"] == hashlib.sha256(b"ketch").hexdigest()


def test_the_sha256_constructor_is_the_one_this_python_should_use():
    """On a verified CPython it is _sha256's (3.11) or _sha2's (3.12 and newer), never silently
    hashlib's; elsewhere hashlib's. Either way it hashes as hashlib does."""
    module = private.sha256().__module__
    if private.ENABLED:
        assert module in ("_sha256", "_sha2")
    else:
        assert module in ("_hashlib", "_sha256", "_sha2", "hashlib")  # hashlib's (OpenSSL or builtin)
    assert private.sha256()(b"x").hexdigest() == hashlib.sha256(b"x").hexdigest()
    assert leanjson.dumps({"k": [1, "é"]}) == json.dumps({"k": [1, "é"]})
