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
 * usage: ketch-monitor LOG_PATH|- EXIT_FILE INIT_PID OUT_FD ERR_FD MASTER_FD -- CLEANUP...
 * (an fd of -1 is not there; LOG_PATH "-" discards the output: --log-driver none)
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

int main(int argc, char **argv) {
    if (argc < 9 || strcmp(argv[7], "--") != 0) {
        fprintf(stderr, "usage: ketch-monitor LOG_PATH|- EXIT_FILE INIT_PID OUT_FD ERR_FD MASTER_FD -- CLEANUP...\n");
        return 2;
    }
    const char *log_path = argv[1], *exit_file = argv[2];
    pid_t init = (pid_t)atol(argv[3]);
    static struct stream streams[3];
    streams[0] = (struct stream){.fd = atoi(argv[4]), .name = "stdout"};
    streams[1] = (struct stream){.fd = atoi(argv[5]), .name = "stderr"};
    streams[2] = (struct stream){.fd = atoi(argv[6]), .name = "stdout"};
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(log_path, "-") != 0) {
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    int status = -1, exited = 0;
    for (;;) {
        struct pollfd fds[3];
        struct stream *which[3];
        int count = 0;
        for (int i = 0; i < 3; i++) {
            if (streams[i].fd >= 0) {
                fds[count] = (struct pollfd){.fd = streams[i].fd, .events = POLLIN};
                which[count++] = &streams[i];
            }
        }
        if (exited && count == 0) break;
        int ready = poll(fds, (nfds_t)count, exited ? 500 : 200);
        if (ready < 0 && errno != EINTR) break;
        if (exited && ready == 0) break; /* exited, and nothing more came: something it left holds a pipe */
        for (int i = 0; i < count && ready > 0; i++) {
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) pump(which[i]);
        }
        if (!exited) {
            int raw;
            pid_t reaped;
            while ((reaped = waitpid(-1, &raw, WNOHANG)) > 0) {
                if (reaped == init) {
                    exited = 1;
                    status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
                }
            }
            if (reaped < 0 && errno == ECHILD && !exited) {
                exited = 1; /* nothing left to wait for: the init was not ours */
            }
        }
    }
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
