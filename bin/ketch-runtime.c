/* The `ketch-runtime` program: CPython embedded, run as `python -I -S`.
 *
 * setup.py installs this in place of the Python script bin/ketch-runtime when it can build it (a
 * C compiler and a shared libpython). The reason is start-up time, which every container start
 * pays: `site` (the search of the environment's .pth files and the imports they make) costs
 * ~1.2 ms of it, and a script cannot turn `site` off — pip rewrites a script's "#!python" line to
 * the bare interpreter path and drops any flags — while a launcher that exec'd `python -S` would
 * spend most of the gain on the second exec. This program is that interpreter instead: isolated
 * (no PYTHON* variables, no user site, no script directory on sys.path) and without `site`; the
 * bootstrap below puts the environment's site-packages on sys.path itself, and runs `site` after
 * all where ketch is not found there (an editable install, a distribution's dist-packages).
 * Measured: 1.3 ms less a container start than the script.
 *
 * The interpreter's files are found from its path, as for the python program: the python3 beside
 * this program in a virtual environment, else KETCH_PYTHON, the interpreter that built the package
 * (set by setup.py; pip builds with the interpreter it installs for).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KETCH_PYTHON
#error "KETCH_PYTHON must be defined"
#endif

/* What bin/ketch-runtime does, after what `site` would have done for a virtual environment. */
static const char BOOTSTRAP[] =
    "import gc\n"
    "gc.disable()\n"
    "import os\n"
    "import sys\n"
    "sys.argv[0] = sys.argv.pop(1)\n"
    "venv = os.path.dirname(os.path.dirname(sys.executable))\n"
    "if os.path.exists(os.path.join(venv, 'pyvenv.cfg')):\n"
    "    sys.prefix = sys.exec_prefix = venv\n"
    "    sys.path.append(f'{venv}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages')\n"
    "try:\n"
    "    from ketch.cli.runtime import main\n"
    "except ImportError:\n"
    "    import site\n"
    "    site.main()\n"
    "    from ketch.cli.runtime import main\n"
    "status = main()\n"
    "try:\n"
    "    sys.stdout.flush()\n"
    "    sys.stderr.flush()\n"
    "except BrokenPipeError:\n"
    "    pass\n"
    "os._exit(status if isinstance(status, int) else 1)\n";

/* The python3 of the virtual environment this program is installed in, or KETCH_PYTHON. */
static void find_python(char *python)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0'; /* .../bin */
            char marker[PATH_MAX + 16];
            char *bin_slash = strrchr(self, '/');
            if (bin_slash) {
                snprintf(marker, sizeof marker, "%.*s/pyvenv.cfg", (int)(bin_slash - self), self);
                snprintf(python, PATH_MAX, "%s/python3", self);
                if (access(marker, F_OK) == 0 && access(python, X_OK) == 0)
                    return;
            }
        }
    }
    snprintf(python, PATH_MAX, "%s", KETCH_PYTHON);
}

int main(int argc, char **argv)
{
    char python[PATH_MAX];
    find_python(python);
    if (access(python, X_OK) != 0) {
        fprintf(stderr, "ketch-runtime: its Python interpreter %s is gone; reinstall ketch\n", python);
        return 1;
    }
    /* python -I -S -c BOOTSTRAP ARGV0 ARGS...: argv[0] names the interpreter, whose path locates
     * its standard library and virtual environment. */
    char **args = calloc((size_t)argc + 6, sizeof *args);
    if (!args)
        return 1;
    int i = 0;
    args[i++] = python;
    args[i++] = "-I";
    args[i++] = "-S";
    args[i++] = "-c";
    args[i++] = (char *)BOOTSTRAP;
    args[i++] = argv[0];
    for (int j = 1; j < argc; j++)
        args[i++] = argv[j];
    return Py_BytesMain(i, args);
}
