/* A static helper the container tests copy into busybox containers (busybox cannot do these):
 *   ktest accept          accept one connection on fd 3 (socket activation), greet it, exit
 *   ktest notify TEXT     send TEXT as one datagram to $NOTIFY_SOCKET (sd_notify), exit */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "accept") == 0) {
        int conn = accept(3, NULL, NULL);
        if (conn < 0) { perror("accept on fd 3"); return 1; }
        const char *greeting = "hello from fd 3\n";
        if (write(conn, greeting, strlen(greeting)) < 0) { perror("write"); return 1; }
        close(conn);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "notify") == 0) {
        const char *path = getenv("NOTIFY_SOCKET");
        if (!path) { fprintf(stderr, "no NOTIFY_SOCKET\n"); return 1; }
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
        int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (fd < 0 || sendto(fd, argv[2], strlen(argv[2]), 0, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            perror("sendto");
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "usage: ktest accept | ktest notify TEXT\n");
    return 2;
}
