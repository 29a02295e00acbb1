"""runtime-spec hooks: a program given the container's state on stdin, with an optional timeout.

When each kind runs, and what its failure does (runtime-spec, config.md "POSIX-platform Hooks"):

===============  ==========================  ===================  ===========================
kind             when                        namespaces           on failure
===============  ==========================  ===================  ===========================
prestart         create, before pivot_root   the runtime's        create fails, nothing left
createRuntime    create, before pivot_root   the runtime's        create fails, nothing left
createContainer  create, before pivot_root   the container's      create fails, nothing left
startContainer   start, before the program   the container's      the program does not run
poststart        start, after the program    the runtime's        a warning; start succeeds
poststop         delete, after removal       the runtime's        a warning; delete succeeds
===============  ==========================  ===================  ===========================

Only ``os``, ``time`` and ``_signal`` are used: the init runs hooks after its root changed, where
the host's Python library is out of reach.
"""

from __future__ import annotations

import os
import time

from ketch.errors import InvalidInputError, OCIRuntimeError
from ketch.runtime.private import signal_module as _signal

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


class HookError(OCIRuntimeError):
    """A hook failed or ran out of time."""


def check(hooks: object) -> dict[str, list[dict]]:
    """The config's ``hooks``, checked: absolute paths, string lists, positive timeouts."""
    if hooks is None:
        return {}
    if not isinstance(hooks, dict):
        raise InvalidInputError("config.json: hooks must be an object")
    out = {}
    for kind, entries in hooks.items():
        if kind not in KINDS:
            continue  # unknown keys are ignored, as the spec asks
        if not isinstance(entries, list):
            raise InvalidInputError(f"config.json: hooks.{kind} must be a list")
        for i, hook in enumerate(entries):
            where = f"hooks.{kind}[{i}]"
            if not isinstance(hook, dict) or not isinstance(hook.get("path"), str) or not hook["path"].startswith("/"):
                raise InvalidInputError(f"config.json: {where}.path must be an absolute path")
            for key in ("args", "env"):
                value = hook.get(key)
                if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                    raise InvalidInputError(f"config.json: {where}.{key} must be a list of strings")
            timeout = hook.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
                raise InvalidInputError(f"config.json: {where}.timeout must be a positive number of seconds")
        if entries:
            out[kind] = entries
    return out


def run(kind: str, hooks: list[dict], state_json: str) -> None:
    """Run the hooks of one kind in order; the first failure stops them and raises HookError
    (prestart, createRuntime, createContainer, startContainer: the container is not started)."""
    for hook in hooks:
        run_one(kind, hook, state_json)


def run_all(kind: str, hooks: list[dict], state_json: str) -> list[HookError]:
    """Run every hook of one kind, in order, whatever fails: the runtime spec says a failing
    poststart or poststop hook is logged and the remaining hooks still run. The failures."""
    failures = []
    for hook in hooks:
        try:
            run_one(kind, hook, state_json)
        except HookError as exc:
            failures.append(exc)
    return failures


def run_one(kind: str, hook: dict, state_json: str) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = {}
    for entry in hook.get("env") or []:
        name, _, value = entry.partition("=")
        env[name] = value
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the hook
        try:
            os.dup2(read_end, 0)
            os.close(read_end)
            os.close(write_end)
            os.execve(path, args, env)
        except BaseException:  # noqa: BLE001 - the forked child: nothing may unwind into the runtime
            os._exit(127)
    os.close(read_end)
    try:
        os.write(write_end, state_json.encode())  # a state is far below a pipe's buffer
    except BrokenPipeError:
        pass  # a hook need not read its stdin
    finally:
        os.close(write_end)
    timeout = hook.get("timeout")
    if timeout:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                raise HookError(f"{kind} hook {path} did not finish within {timeout}s")
            time.sleep(0.002)
    else:
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 127 and not os.path.exists(path):
        raise HookError(f"{kind} hook {path}: no such file")
    if code != 0:
        raise HookError(f"{kind} hook {path} failed with exit status {code}")
