/*
 * pause: the process that holds a pod's namespaces (the kubelet's "sandbox"
 * image, registry.k8s.io/pause). It sleeps until asked to stop, exits 0 on
 * SIGTERM or SIGINT, and reaps children it inherits when the pod shares one
 * process namespace (it is then PID 1 for the pod). Built static, so the image
 * needs nothing else.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static void on(int sig, void (*handler)(int), int flags) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = flags;
    if (sigaction(sig, &action, NULL) < 0) {
        perror("pause: sigaction");
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("pause (gitwarden tests/images) 3.10");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not running as PID 1\n");
    }
    on(SIGTERM, stop, 0);
    on(SIGINT, stop, 0);
    on(SIGCHLD, reap, SA_NOCLDSTOP);
    for (;;) {
        pause();
    }
}
