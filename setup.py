"""The package's two pieces of C, built at install time:

- the extension ``ketch._linux`` (src/ketch/_linux.c): the system calls Python lacks, which the
  runtime makes on every container start (see its header for why it is not ctypes); required.
- ``ketch-monitor`` (src/ketch/containers/monitor.c): the long-lived part of a detached container's
  monitor is a small C program, so that each running container costs a fraction of a Python
  interpreter's memory (see ketch/containers/monitor.py). Without a C compiler the build goes on
  without it, and the monitor stays in Python.

Everything else about the package is in pyproject.toml.
"""

import os
import shutil
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SOURCE = os.path.join("src", "ketch", "containers", "monitor.c")


class BuildWithMonitor(build_py):
    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "ketch", "containers", "ketch-monitor")
        compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
        if not shutil.which(compiler):
            compiler = "cc"
        try:
            subprocess.run([compiler, "-O2", "-o", target, SOURCE], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.warn(f"ketch-monitor not built ({exc}); detached containers' monitors will run in Python")


setup(cmdclass={"build_py": BuildWithMonitor},
      ext_modules=[Extension("ketch._linux", [os.path.join("src", "ketch", "_linux.c")],
                             extra_compile_args=["-O2", "-Wall"])])
