/* ketch-monitor: the part of a detached container's monitor that lives as long as the container.
 *
 * ketch.containers.monitor (Python) makes itself a child subreaper, creates and starts the
 * container through the runtime library, and then execs this program, which keeps its pid, its
 * subreaper flag and its children: the container's init stays our child. Python's interpreter
 * alone takes ~3 MB of memory per process (PSS); a container's lifetime is long, and conmon
 * (what podman runs for this) takes ~0.4 MB, so the long-lived part is this small C program.
 *
 * It copies the container's output (pipes, or a pty's master) into the log in the k8s-file
 * format conmon writes, reaps children until the init exits, writes the exit status to
 * EXIT_FILE (atomically), then execs the cleanup command.
 *
 * usage: ketch-monitor [OPTIONS] LOG_PATH|- EXIT_FILE INIT_PID OUT_FD ERR_FD MASTER_FD -- CLEANUP...
 * (an fd of -1 is not there; LOG_PATH "-" discards the output: --log-driver none)
 *
 * OPTIONS, each what podman's conmon does for the same run flag:
 *   --timeout SECONDS        kill the init (SIGKILL) after SECONDS; the exit status is then 255
 *   --health-interval SECS   every SECS, run the command whose arguments are NUL-separated in
 *   --health-argv FILE       FILE (``ketch healthcheck run ID``), as a child with no stdio
 *   --stdin-fifo PATH        copy what is written into the FIFO PATH (``ketch attach``) to
 *   --stdin-fd FD            FD: the container's stdin pipe, or its terminal's master
 *   --stdin-once             close FD once the first client that wrote the FIFO closes it
 *   --log-max-size BYTES     truncate the log when it grows past BYTES
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PARTIAL_LIMIT 16384

struct stream {
    int fd;
    const char *name;
    char pending[PARTIAL_LIMIT];
    size_t used;
};

static int log_fd = -1;
/* SIGHUP: reopen the log at its path (the CRI's ReopenContainerLog, after the kubelet rotated it) */
static volatile sig_atomic_t reopen_log = 0;
static void on_hangup(int signo) { (void)signo; reopen_log = 1; }
static long long log_max_size = 0;

static void write_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* a full disk must not stop the container: the record is lost */
        }
        data += n;
        size -= (size_t)n;
    }
}

static void record(const char *stream, const char *text, size_t size, int partial) {
    if (log_fd < 0) return;
    struct timespec now;
    struct tm tm;
    char stamp[64];
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%09ld+00:00 %s %c ", now.tv_nsec, stream, partial ? 'P' : 'F');
    size_t head = strlen(stamp);
    char *line = malloc(head + size + 1);
    if (!line) return;
    memcpy(line, stamp, head);
    memcpy(line + head, text, size);
    line[head + size] = '\n';
    write_all(log_fd, line, head + size + 1);
    free(line);
    if (log_max_size > 0 && lseek(log_fd, 0, SEEK_END) > log_max_size) {
        if (ftruncate(log_fd, 0) != 0) { /* a log that cannot shrink keeps growing: nothing better to do */ }
    }
}

static void take(struct stream *s, const char *data, size_t size) {
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\n') {
            record(s->name, s->pending, s->used, 0);
            s->used = 0;
        } else {
            if (s->used == PARTIAL_LIMIT) { /* a very long line: written as partial records */
                record(s->name, s->pending, s->used, 1);
                s->used = 0;
            }
            s->pending[s->used++] = data[i];
        }
    }
}

static void flush_partial(struct stream *s) {
    if (s->used) record(s->name, s->pending, s->used, 1);
    s->used = 0;
}

/* Read what is ready; 0 when the stream ended (end of file, or a pty whose other side is gone). */
static int pump(struct stream *s) {
    char buffer[65536];
    ssize_t n = read(s->fd, buffer, sizeof(buffer));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (n <= 0) {
        flush_partial(s);
        close(s->fd);
        s->fd = -1;
        return 0;
    }
    take(s, buffer, (size_t)n);
    return 1;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The health command's arguments, NUL-separated in a file; NULL when it cannot be read. */
static char **read_argv(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    static char data[65536];
    ssize_t n = read(fd, data, sizeof(data) - 1);
    close(fd);
    if (n <= 0) return NULL;
    data[n] = '\0';
    int count = 0;
    for (ssize_t i = 0; i < n; i++) if (data[i] == '\0') count++;
    if (data[n - 1] != '\0') count++;
    char **out = calloc((size_t)count + 1, sizeof(char *));
    if (!out) return NULL;
    int k = 0;
    for (ssize_t i = 0; i < n && k < count; k++) {
        out[k] = data + i;
        i += (ssize_t)strlen(data + i) + 1;
    }
    return out;
}

static void run_health_check(char **argv) {
    pid_t child = fork();
    if (child == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
        setsid();
        execvp(argv[0], argv);
        _exit(127);
    }
}

int main(int argc, char **argv) {
    double timeout = 0, health_interval = 0;
    const char *health_file = NULL, *stdin_fifo = NULL;
    int stdin_target = -1, stdin_once = 0, arg = 1;
    while (arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0 && argv[arg][2] != '\0') {
        const char *flag = argv[arg], *value = argv[arg + 1];
        if (strcmp(flag, "--timeout") == 0) timeout = atof(value);
        else if (strcmp(flag, "--health-interval") == 0) health_interval = atof(value);
        else if (strcmp(flag, "--health-argv") == 0) health_file = value;
        else if (strcmp(flag, "--stdin-fifo") == 0) stdin_fifo = value;
        else if (strcmp(flag, "--stdin-fd") == 0) stdin_target = atoi(value);
        else if (strcmp(flag, "--stdin-once") == 0) { stdin_once = 1; arg -= 1; }
        else if (strcmp(flag, "--log-max-size") == 0) log_max_size = atoll(value);
        else { fprintf(stderr, "ketch-monitor: unknown option %s\n", flag); return 2; }
        arg += 2;
    }
    argc -= arg - 1;
    argv += arg - 1;
    if (argc < 9 || strcmp(argv[7], "--") != 0) {
        fprintf(stderr, "usage: ketch-monitor [OPTIONS] LOG_PATH|- EXIT_FILE INIT_PID OUT_FD ERR_FD MASTER_FD -- "
                        "CLEANUP...\n");
        return 2;
    }
    const char *log_path = argv[1], *exit_file = argv[2];
    pid_t init = (pid_t)atol(argv[3]);
    static struct stream streams[3];
    streams[0] = (struct stream){.fd = atoi(argv[4]), .name = "stdout"};
    streams[1] = (struct stream){.fd = atoi(argv[5]), .name = "stderr"};
    streams[2] = (struct stream){.fd = atoi(argv[6]), .name = "stdout"};
    signal(SIGPIPE, SIG_IGN);
    struct sigaction hangup = {.sa_handler = on_hangup};
    sigaction(SIGHUP, &hangup, NULL); /* no SA_RESTART: poll returns, and the loop reopens */
    if (strcmp(log_path, "-") != 0) {
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    /* O_RDWR: the FIFO always has a writer (us), so it never reads end-of-file between attaches;
     * --stdin-once: read-only, so the first client's end (once one has written) reads as the end */
    int fifo = stdin_fifo ? open(stdin_fifo, (stdin_once ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC) : -1;
    char **health_argv = health_file && health_interval > 0 ? read_argv(health_file) : NULL;
    double started = now_seconds(), next_health = started + health_interval;
    int status = -1, exited = 0, timed_out = 0;
    for (;;) {
        struct pollfd fds[4];
        struct stream *which[4];
        int count = 0;
        for (int i = 0; i < 3; i++) {
            if (streams[i].fd >= 0) {
                fds[count] = (struct pollfd){.fd = streams[i].fd, .events = POLLIN};
                which[count++] = &streams[i];
            }
        }
        int fifo_slot = -1;
        if (fifo >= 0 && !exited) {
            fifo_slot = count;
            fds[count] = (struct pollfd){.fd = fifo, .events = POLLIN};
            which[count++] = NULL;
        }
        if (reopen_log) {
            reopen_log = 0;
            if (log_fd >= 0) {
                int fresh = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (fresh >= 0) { close(log_fd); log_fd = fresh; }
            }
        }
        if (exited && count == 0) break;
        int ready = poll(fds, (nfds_t)count, exited ? 500 : 200);
        if (ready < 0 && errno != EINTR) break;
        if (exited && ready == 0) break; /* exited, and nothing more came: something it left holds a pipe */
        for (int i = 0; i < count && ready > 0; i++) {
            if (i == fifo_slot) {
                if (fds[i].revents & (POLLIN | POLLHUP)) {
                    char buffer[65536];
                    ssize_t n = read(fifo, buffer, sizeof(buffer));
                    if (n > 0 && stdin_target >= 0) write_all(stdin_target, buffer, (size_t)n);
                    if (n == 0 && stdin_once) { /* the client has gone: so does the container's stdin */
                        close(fifo);
                        fifo = -1;
                        if (stdin_target >= 0) close(stdin_target);
                        stdin_target = -1;
                    }
                }
                continue;
            }
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) pump(which[i]);
        }
        if (!exited) {
            int raw;
            pid_t reaped;
            while ((reaped = waitpid(-1, &raw, WNOHANG)) > 0) {
                if (reaped == init) {
                    exited = 1;
                    status = timed_out ? 255 : WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
                }
            }
            if (reaped < 0 && errno == ECHILD && !exited) {
                exited = 1; /* nothing left to wait for: the init was not ours */
            }
            double now = now_seconds();
            if (!exited && timeout > 0 && !timed_out && now - started >= timeout) {
                timed_out = 1;
                kill(init, SIGKILL);
            }
            if (!exited && health_argv && now >= next_health) {
                run_health_check(health_argv);
                next_health = now + health_interval;
            }
        }
    }
    if (fifo >= 0) close(fifo);
    if (stdin_target >= 0) close(stdin_target);
    for (int i = 0; i < 3; i++) {
        if (streams[i].fd >= 0) flush_partial(&streams[i]);
    }
    if (log_fd >= 0) close(log_fd);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", exit_file);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        char text[32];
        int n = snprintf(text, sizeof(text), "%d\n", status);
        write_all(fd, text, (size_t)n);
        fsync(fd);
        close(fd);
        rename(tmp, exit_file);
    }
    execvp(argv[8], argv + 8);
    perror("ketch-monitor: exec the cleanup");
    return 1;
}
