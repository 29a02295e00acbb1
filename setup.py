"""The package's three pieces of C, built at install time:

- the extension ``ketch._linux`` (src/ketch/_linux.c): the system calls Python lacks, which the
  runtime makes on every container start (see its header for why it is not ctypes); required.
- the ``ketch-runtime`` program (bin/ketch-runtime.c): CPython embedded and run without ``site``, as
  every container start pays for ``site`` (see its header); without a C compiler or a shared
  libpython, the Python script bin/ketch-runtime is installed instead.
- the CRI's gRPC modules ``ketch.cri.api_pb2`` and ``api_pb2_grpc``, generated from
  src/ketch/cri/api.proto with grpcio-tools (a build requirement, pinned to the protobuf major
  version the package depends on): no maintained package ships the CRI v1 stubs for Python, and
  generated code kept in git would go stale against the protobuf runtime; required.
- ``ketch-monitor`` (src/ketch/containers/monitor.c): the long-lived part of a detached container's
  monitor is a small C program, so that each running container costs a fraction of a Python
  interpreter's memory (see ketch/containers/monitor.py). Without a C compiler the build goes on
  without it, and the monitor stays in Python.

Everything else about the package is in pyproject.toml.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

# setuptools has no build_scripts of its own; this is its copy of distutils' (setuptools is imported first).
from distutils.command.build_scripts import build_scripts  # noqa: E402

MONITOR_SOURCE = os.path.join("src", "ketch", "containers", "monitor.c")
RUNTIME_SOURCE = os.path.join("bin", "ketch-runtime.c")


def _compiler() -> str:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return compiler if shutil.which(compiler) else "cc"


def _generate_cri_modules(build_lib: str) -> None:
    from grpc_tools import protoc  # the build requirement; its own protoc, no system one needed

    import grpc_tools

    includes = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    status = protoc.main(["protoc", "-Isrc", f"-I{includes}", f"--python_out={build_lib}",
                          f"--grpc_python_out={build_lib}", os.path.join("src", "ketch", "cri", "api.proto")])
    if status != 0:
        raise RuntimeError("generating the CRI modules from src/ketch/cri/api.proto failed")


class BuildWithMonitor(build_py):
    def run(self):
        super().run()
        _generate_cri_modules(self.build_lib)
        target = os.path.join(self.build_lib, "ketch", "containers", "ketch-monitor")
        try:
            subprocess.run([_compiler(), "-O2", "-o", target, MONITOR_SOURCE], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.warn(f"ketch-monitor not built ({exc}); detached containers' monitors will run in Python")


class BuildWithEmbeddedRuntime(build_scripts):
    """bin/ketch-runtime as the C program bin/ketch-runtime.c where it can be built."""

    def run(self):
        super().run()
        config = sysconfig.get_config_var
        if not config("Py_ENABLE_SHARED"):
            self.warn("no shared libpython here: ketch-runtime is installed as a Python script")
            return
        target = os.path.join(self.build_dir, "ketch-runtime")
        # sys.executable: pip builds a package with the interpreter it installs it for.
        command = [_compiler(), "-O2", "-Wall", f"-I{config('INCLUDEPY')}", f'-DKETCH_PYTHON="{sys.executable}"',
                   "-o", target + ".new", RUNTIME_SOURCE, f"-L{config('LIBDIR')}", f"-Wl,-rpath,{config('LIBDIR')}",
                   f"-lpython{config('LDVERSION')}"]
        try:
            subprocess.run(command, check=True)
            os.replace(target + ".new", target)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.warn(f"ketch-runtime not built as a program ({exc}); it is installed as a Python script")


setup(cmdclass={"build_py": BuildWithMonitor, "build_scripts": BuildWithEmbeddedRuntime},
      ext_modules=[Extension("ketch._linux", [os.path.join("src", "ketch", "_linux.c")],
                             extra_compile_args=["-O2", "-Wall"])])
