"""The layering of docs/architecture.md, checked over every import of every module (those inside
functions too: ketch imports lazily on purpose), and the rule that no layer writes SQL against
another layer's tables."""

import ast
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src" / "ketch"
BASE = {"errors", "records", "filelocks", "syscalls", "_linux", "userns"}
# package -> the packages (or single modules) of ketch it may import
ALLOWED = {
    "oci": BASE,
    "storage": BASE | {"oci"},
    "image": BASE | {"oci", "storage"},
    "runtime": BASE | {"oci"},
    "containers": BASE | {"oci", "storage", "image", "runtime"},
    # the builder runs processes through containers, never by driving the runtime; it may use
    # the runtime's safe path resolution and the spec's types, which run nothing
    "builder": BASE | {"oci", "storage", "image", "containers", "runtime.paths", "runtime.spectypes"},
    # the CRI server runs containers through the engine; of the runtime it reads capability numbers only
    "cri": BASE | {"oci", "storage", "image", "containers", "runtime.capabilities"},
    # system containers deploy through storage and containers; of the runtime they take the
    # default spec to fill and the capability names (nothing that runs a container)
    "system": BASE | {"oci", "storage", "image", "containers", "runtime.spec", "runtime.capabilities"},
    # scanning reads images through the store's read-only views and pulls remote ones into a
    # temporary store; of the runtime it takes the capability names only
    "scanning": BASE | {"oci", "storage", "image", "runtime.capabilities"},
    # the Docker API service translates to the engine, the store, the image library and the builder
    "dockerapi": BASE | {"oci", "storage", "image", "containers", "builder"},
    "cli": BASE | {"oci", "storage", "image", "runtime", "containers", "builder", "cri", "system", "scanning",
                   "dockerapi"},
}
BASE_ALLOWED = {"errors": set(), "records": {"errors"}, "filelocks": {"errors"}, "syscalls": {"errors", "_linux"},
                "userns": {"errors", "syscalls", "filelocks", "records"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if name.startswith("ketch.") else None
    return relative is not None and ((SOURCE / relative).with_suffix(".py").exists() or (SOURCE / relative).is_dir())


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names  # from x import module
                      if is_module(f"{target}.{alias.name}")]
    return found


def allowed(source_package: str, target: str) -> bool:
    parts = target.split(".")
    if parts[0] != "ketch" or len(parts) == 1:
        return True  # the standard library, third parties, ``import ketch`` (the lazy facade)
    target_package = parts[1]
    if target_package == source_package:
        return True
    rules = ALLOWED.get(source_package, BASE_ALLOWED.get(source_package, set()))
    if target_package in rules:
        return True
    # a single allowed module (``runtime.paths``); a name imported from a package is checked as the
    # package was (``from ketch.runtime import paths`` gives ``ketch.runtime`` and ``ketch.runtime.paths``)
    return ".".join(parts[1:3]) in rules


def all_modules() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py"))


def test_the_walk_sees_lazy_imports():
    """The checker itself: an import inside a function is found (else the contract proves nothing)."""
    found = dict((target, line) for line, target in imports_of(SOURCE / "builder" / "working.py"))
    assert "ketch.containers.engine" in found  # imported inside Builder.run only
    assert not allowed("storage", "ketch.image.compression")
    assert not allowed("builder", "ketch.runtime.container")
    assert allowed("builder", "ketch.runtime.paths")


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_imports_follow_the_layers(path):
    source_package = module_name(path).split(".")[1] if "." in module_name(path) else ""
    if not source_package:
        return  # ketch/__init__.py: the public facade, which names every layer lazily
    bad = []
    for line, target in imports_of(path):
        if not allowed(source_package, target):
            # ``from ketch.runtime import paths`` also yields ``ketch.runtime`` itself: judge the pair
            if target.count(".") == 1 and any(t.startswith(target + ".") and allowed(source_package, t)
                                              for n, t in imports_of(path) if n == line):
                continue
            bad.append(f"line {line}: {target}")
    assert bad == [], f"{module_name(path)} reaches past its layer: {bad}"


STORE_TABLES = ("contents", "blobs", "layers", "images", "names", "containers", "mounts", "meta")
SQL = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE(?: IF NOT EXISTS)?)\s+(\w+)", re.IGNORECASE)


@pytest.mark.parametrize("package", ["image", "containers", "builder", "cli"])
def test_no_sql_on_the_stores_tables_outside_storage(package):
    """Each layer owns its tables: only ketch.storage writes or reads the store's own."""
    offenders = []
    for path in (SOURCE / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(
                    r"\b(SELECT|INSERT|UPDATE|DELETE)\b", node.value):
                offenders += [f"{path.name}: {t}" for t in SQL.findall(node.value) if t.lower() in STORE_TABLES]
    assert offenders == []


def test_exit_statuses_come_from_error_classes():
    """The CLI's status is the error class's ``exit_code``: nothing sets it on an instance."""
    setters = []
    for path in all_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "exit_code"
                                                    for t in node.targets):
                setters.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert setters == []


def test_cleanup_failures_are_logged_by_kind(caplog):
    import logging

    from ketch.errors import KetchError, NotFoundError, log_cleanup_failure

    with caplog.at_level(logging.DEBUG, logger="ketch.test"):
        log_cleanup_failure("ketch.test", "c1: deleting its runtime state", NotFoundError("gone"))
        log_cleanup_failure("ketch.test", "c1: unmounting", KetchError("busy"))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "c1: deleting its runtime state: gone"), ("WARNING", "c1: unmounting: busy")]
