/*
 * A minimal native socket forwarder for the stream benchmark's "native 3-hop floor" (bench/stream.sh): one thread,
 * epoll, non-blocking sockets, no framing. It accepts TCP on 127.0.0.1:<port> (0 = any free port, printed on the
 * first line of stdout) and forwards each connection both ways to a new connection to the target, "tcp:PORT"
 * (127.0.0.1) or "unix:PATH". Two of them chained in front of the echo server give the architecture's hops
 * (browser -> control plane -> agent -> session) with the least work a relay can do per message on this machine:
 * per message and hop one epoll_wait, one read and one write. Not part of the product.
 *
 * Usage: forwarder PORT TARGET
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#define BUF (64 * 1024)

/* One direction: bytes read from fd wait in buf until written to the peer's fd. */
struct side {
    int fd;
    struct side *peer;
    char *buf;
    size_t start, end;
    unsigned events; /* current epoll interest of fd */
};

static int ep;

static void die(const char *what) { perror(what); exit(1); }

static void nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void interest(struct side *s, unsigned events) {
    if (s->events == events) return;
    struct epoll_event ev = { .events = events, .data.ptr = s };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev) < 0) die("epoll_ctl");
    s->events = events;
}

/* Closed pairs are freed after the current epoll batch, which may still name them. */
static struct side *closed[512];
static int nclosed;

static void close_pair(struct side *s) {
    struct side *p = s->peer;
    close(s->fd); close(p->fd);
    s->fd = p->fd = -1;
    closed[nclosed++] = s;
}

/* Writes what s read to its peer; 0 when all of it went, 1 when the peer's socket is full (wait for EPOLLOUT), -1 on error. */
static int flush(struct side *s) {
    while (s->start < s->end) {
        ssize_t w = write(s->peer->fd, s->buf + s->start, s->end - s->start);
        if (w < 0) return errno == EAGAIN ? 1 : -1;
        s->start += (size_t)w;
    }
    s->start = s->end = 0;
    return 0;
}

/* s's interest: read while nothing of its own waits; write while its peer's bytes wait for it. */
static void update(struct side *s) {
    unsigned events = (s->end == 0 ? EPOLLIN : 0) | (s->peer->end > 0 ? EPOLLOUT : 0);
    interest(s, events);
}

static int connect_target(const char *target) {
    int fd;
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        strncpy(a.sun_path, target + 5, sizeof a.sun_path - 1);
        if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
    } else {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(target + 4)) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int one = 1;
        if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    nonblocking(fd);
    return fd;
}

static struct side *side_for(int fd) {
    struct side *s = calloc(1, sizeof *s);
    if (!s || !(s->buf = malloc(BUF))) die("malloc");
    s->fd = fd;
    s->events = EPOLLIN;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
    return s;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strncmp(argv[2], "tcp:", 4) != 0 && strncmp(argv[2], "unix:", 5) != 0)) {
        fprintf(stderr, "usage: forwarder PORT tcp:PORT|unix:PATH\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) < 0 || listen(listener, 1024) < 0) die("listen");
    getsockname(listener, (struct sockaddr *)&a, &len);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    nonblocking(listener);
    if ((ep = epoll_create1(0)) < 0) die("epoll_create1");
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev);

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct side *s = events[i].data.ptr;
            if (s != NULL && s->fd < 0) continue;
            if (s == NULL) {
                int in;
                while ((in = accept(listener, NULL, NULL)) >= 0) {
                    int out = connect_target(argv[2]);
                    if (out < 0) { close(in); continue; }
                    setsockopt(in, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    nonblocking(in);
                    struct side *x = side_for(in), *y = side_for(out);
                    x->peer = y; y->peer = x;
                }
                continue;
            }
            int failed = 0;
            if (events[i].events & EPOLLOUT) failed = flush(s->peer) < 0;
            if (!failed && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && s->end == 0) {
                ssize_t r = read(s->fd, s->buf, BUF);
                if (r == 0 || (r < 0 && errno != EAGAIN)) failed = 1;
                else if (r > 0) { s->end = (size_t)r; failed = flush(s) < 0; }
            }
            if (failed) { close_pair(s); continue; }
            update(s);
            update(s->peer);
        }
        for (; nclosed > 0; nclosed--) {
            struct side *c = closed[nclosed - 1];
            free(c->peer->buf); free(c->peer); free(c->buf); free(c);
        }
    }
}
