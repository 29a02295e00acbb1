/* ketch._linux: the Linux system calls Python 3.11 does not offer (no os.unshare, os.setns,
 * mount, pivot_root, prctl, capset, clone3; rlimits without the resource module), for ketch.syscalls.
 *
 * Written by hand in C rather than called through ctypes because they sit on the path of every
 * container start: importing ctypes costs about 2 ms there, this module a few microseconds, and
 * no maintained library offers these calls without ctypes or a heavier import.
 *
 * Every function returns what the kernel returned, or -errno on failure; ketch.syscalls turns a
 * failure into OSError with a message that names what failed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* O& converter: None stays NULL, anything else is a file-system path turned into bytes. */
static int optional_path(PyObject *object, void *out)
{
    if (object == NULL) { /* cleanup call */
        Py_CLEAR(*(PyObject **)out);
        return 1;
    }
    if (object == Py_None) {
        *(PyObject **)out = NULL;
        return 1;
    }
    return PyUnicode_FSConverter(object, out) ? Py_CLEANUP_SUPPORTED : 0;
}

static const char *chars(PyObject *bytes)
{
    return bytes ? PyBytes_AS_STRING(bytes) : NULL;
}

static PyObject *result(long value)
{
    return PyLong_FromLong(value < 0 ? -errno : value);
}

static PyObject *linux_mount(PyObject *self, PyObject *args)
{
    PyObject *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "O&O&O&kO&", optional_path, &source, PyUnicode_FSConverter, &target, optional_path,
                          &fstype, &flags, optional_path, &data))
        return NULL;
    long rc = mount(chars(source), chars(target), chars(fstype), flags, chars(data));
    PyObject *out = result(rc);
    Py_XDECREF(source);
    Py_XDECREF(target);
    Py_XDECREF(fstype);
    Py_XDECREF(data);
    return out;
}

static PyObject *linux_umount2(PyObject *self, PyObject *args)
{
    PyObject *target = NULL;
    int flags;
    if (!PyArg_ParseTuple(args, "O&i", PyUnicode_FSConverter, &target, &flags))
        return NULL;
    long rc = umount2(PyBytes_AS_STRING(target), flags);
    PyObject *out = result(rc);
    Py_DECREF(target);
    return out;
}

static PyObject *linux_pivot_root(PyObject *self, PyObject *args)
{
    PyObject *new_root = NULL, *put_old = NULL;
    if (!PyArg_ParseTuple(args, "O&O&", PyUnicode_FSConverter, &new_root, PyUnicode_FSConverter, &put_old))
        return NULL;
    long rc = syscall(SYS_pivot_root, PyBytes_AS_STRING(new_root), PyBytes_AS_STRING(put_old));
    PyObject *out = result(rc);
    Py_DECREF(new_root);
    Py_DECREF(put_old);
    return out;
}

static PyObject *linux_unshare(PyObject *self, PyObject *args)
{
    int flags;
    if (!PyArg_ParseTuple(args, "i", &flags))
        return NULL;
    return result(unshare(flags));
}

static PyObject *linux_setns(PyObject *self, PyObject *args)
{
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii", &fd, &nstype))
        return NULL;
    return result(setns(fd, nstype));
}

static PyObject *linux_prctl(PyObject *self, PyObject *args)
{
    int option;
    unsigned long arg2 = 0, arg3 = 0, arg4 = 0, arg5 = 0;
    if (!PyArg_ParseTuple(args, "i|kkkk", &option, &arg2, &arg3, &arg4, &arg5))
        return NULL;
    return result(prctl(option, arg2, arg3, arg4, arg5));
}

static PyObject *linux_get_child_subreaper(PyObject *self, PyObject *unused)
{
    int value = 0;
    if (prctl(PR_GET_CHILD_SUBREAPER, (unsigned long)&value, 0, 0, 0) < 0)
        return PyLong_FromLong(-errno);
    return PyLong_FromLong(value != 0);
}

static PyObject *set_name(PyObject *args, int (*setter)(const char *, size_t))
{
    const char *name;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "s#", &name, &length))
        return NULL;
    return result(setter(name, (size_t)length));
}

static PyObject *linux_sethostname(PyObject *self, PyObject *args)
{
    return set_name(args, sethostname);
}

static PyObject *linux_setdomainname(PyObject *self, PyObject *args)
{
    return set_name(args, setdomainname);
}

static PyObject *linux_personality(PyObject *self, PyObject *args)
{
    unsigned long persona;
    if (!PyArg_ParseTuple(args, "k", &persona))
        return NULL;
    return result(personality(persona));
}

static PyObject *linux_setrlimit(PyObject *self, PyObject *args)
{
    int resource;
    unsigned long long soft, hard;
    if (!PyArg_ParseTuple(args, "iKK", &resource, &soft, &hard))
        return NULL;
    struct rlimit limit = {(rlim_t)soft, (rlim_t)hard};
    return result(setrlimit(resource, &limit));
}

static PyObject *linux_getrlimit(PyObject *self, PyObject *args)
{
    int resource;
    if (!PyArg_ParseTuple(args, "i", &resource))
        return NULL;
    struct rlimit limit;
    if (getrlimit(resource, &limit) < 0)
        return PyLong_FromLong(-errno);
    return Py_BuildValue("KK", (unsigned long long)limit.rlim_cur, (unsigned long long)limit.rlim_max);
}

/* linux/capability.h's version 3 structures, declared here: that header is not always installed. */
struct cap_header {
    uint32_t version;
    int pid;
};
struct cap_data {
    uint32_t effective, permitted, inheritable;
};

static PyObject *linux_capset(PyObject *self, PyObject *args)
{
    unsigned long long effective, permitted, inheritable;
    if (!PyArg_ParseTuple(args, "KKK", &effective, &permitted, &inheritable))
        return NULL;
    struct cap_header header = {0x20080522, 0};
    struct cap_data data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(effective >> (32 * i));
        data[i].permitted = (uint32_t)(permitted >> (32 * i));
        data[i].inheritable = (uint32_t)(inheritable >> (32 * i));
    }
    return result(syscall(SYS_capset, &header, data));
}

static PyObject *linux_seccomp_set_filter(PyObject *self, PyObject *args)
{
    unsigned int flags;
    Py_buffer program;
    if (!PyArg_ParseTuple(args, "Iy*", &flags, &program))
        return NULL;
    PyObject *out;
    if (program.len % sizeof(struct sock_filter) || program.len / sizeof(struct sock_filter) > USHRT_MAX) {
        out = PyLong_FromLong(-EINVAL);
    } else {
        struct sock_fprog fprog = {(unsigned short)(program.len / sizeof(struct sock_filter)), program.buf};
        out = result(syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, flags, &fprog));
    }
    PyBuffer_Release(&program);
    return out;
}

/* os.fork's sequence (CPython's fork hooks around the system call), with clone3: the child is
 * born in new namespaces (flags) and, when cgroup_fd is not negative, in that cgroup v2
 * directory. For a single-threaded caller only: a raw clone skips glibc's fork handlers, and the
 * child's cached thread id is its parent's. */
static PyObject *linux_clone3(PyObject *self, PyObject *args)
{
    unsigned long long flags;
    int cgroup_fd;
    if (!PyArg_ParseTuple(args, "Ki", &flags, &cgroup_fd))
        return NULL;
    struct clone_args clone = {0};
    clone.flags = flags;
    clone.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        clone.flags |= CLONE_INTO_CGROUP;
        clone.cgroup = (uint64_t)cgroup_fd;
    }
    PyOS_BeforeFork();
    long pid = syscall(SYS_clone3, &clone, sizeof clone);
    if (pid == 0) {
        PyOS_AfterFork_Child();
        return PyLong_FromLong(0);
    }
    int error = errno;
    PyOS_AfterFork_Parent();
    return PyLong_FromLong(pid < 0 ? -error : pid);
}

static PyMethodDef methods[] = {
    {"mount", linux_mount, METH_VARARGS, "mount(source, target, fstype, flags, data) -> 0 or -errno"},
    {"umount2", linux_umount2, METH_VARARGS, "umount2(target, flags) -> 0 or -errno"},
    {"pivot_root", linux_pivot_root, METH_VARARGS, "pivot_root(new_root, put_old) -> 0 or -errno"},
    {"unshare", linux_unshare, METH_VARARGS, "unshare(flags) -> 0 or -errno"},
    {"setns", linux_setns, METH_VARARGS, "setns(fd, nstype) -> 0 or -errno"},
    {"prctl", linux_prctl, METH_VARARGS, "prctl(option, arg2=0, arg3=0, arg4=0, arg5=0) -> result or -errno"},
    {"get_child_subreaper", linux_get_child_subreaper, METH_NOARGS, "1 if this process is a subreaper, or -errno"},
    {"sethostname", linux_sethostname, METH_VARARGS, "sethostname(name) -> 0 or -errno"},
    {"setdomainname", linux_setdomainname, METH_VARARGS, "setdomainname(name) -> 0 or -errno"},
    {"personality", linux_personality, METH_VARARGS, "personality(persona) -> previous persona or -errno"},
    {"setrlimit", linux_setrlimit, METH_VARARGS, "setrlimit(resource, soft, hard) -> 0 or -errno"},
    {"getrlimit", linux_getrlimit, METH_VARARGS, "getrlimit(resource) -> (soft, hard), or -errno"},
    {"capset", linux_capset, METH_VARARGS, "capset(effective, permitted, inheritable) -> 0 or -errno"},
    {"seccomp_set_filter", linux_seccomp_set_filter, METH_VARARGS,
     "seccomp_set_filter(flags, program) -> 0 or -errno; program is struct sock_filter[] as bytes"},
    {"clone3", linux_clone3, METH_VARARGS,
     "clone3(flags, cgroup_fd) -> child pid, 0 in the child, or -errno; cgroup_fd -1 for none"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_linux", NULL, -1, methods};

PyMODINIT_FUNC PyInit__linux(void)
{
    return PyModule_Create(&module);
}
