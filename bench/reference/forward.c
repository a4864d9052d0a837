// The userspace limit for the bench's "reference" path: copies packets between two TUNs, both ways, with vipnat's vnet_hdr offloads and no translation.
//
// Both TUNs are opened the way src/linux/tun.ts opens vipnat's (IFF_TUN | IFF_NO_PI |
// IFF_VNET_HDR, non-blocking, close-on-exec; TUNSETOFFLOAD with CSUM, TSO4, TSO6, TSO_ECN and,
// when the kernel has them, USO4 and USO6), and drained the way vipnat's dataplane worker does
// (src/dataplane/worker.ts): a level-triggered epoll loop, up to 64 reads from a ready fd before
// looking at the other, each packet written at once to the other TUN with its virtio header
// unchanged. So it does what vipnat does per packet minus the translation: one read() and one
// write() of the whole (up to 64 KiB) segment. Nothing else: no parsing, no checksum, no state.
//
// Usage: forward TUN_A TUN_B
// Creates both interfaces in the caller's network namespace and prints "ready" once they exist
// (the caller then moves one into another namespace and configures both: the fds stay attached).
// Runs until SIGTERM or SIGINT, then prints one JSON line of counters and exits 0.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

#define BUFFER_SIZE (65536 + 256) // a 64 KiB segment and its virtio header, as vipnat's worker reads
#define BATCH 64                  // reads from one fd before looking at the other, as vipnat's worker

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static int open_tun(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "forward: open /dev/net/tun: %s\n", strerror(errno));
    exit(1);
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    fprintf(stderr, "forward: TUNSETIFF %s: %s\n", name, strerror(errno));
    exit(1);
  }
  unsigned base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
  if (ioctl(fd, TUNSETOFFLOAD, base | TUN_F_USO4 | TUN_F_USO6) < 0 && ioctl(fd, TUNSETOFFLOAD, base) < 0) {
    fprintf(stderr, "forward: TUNSETOFFLOAD %s: %s\n", name, strerror(errno));
    exit(1);
  }
  return fd;
}

struct side {
  int fd, peer;
  unsigned long long packets, bytes, write_errors, read_errors;
};

// Up to BATCH packets from s->fd to s->peer; returns when the fd has nothing more to read.
static void drain(struct side *s, unsigned char *buf) {
  for (int k = 0; k < BATCH; k++) {
    ssize_t n = read(s->fd, buf, BUFFER_SIZE);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) s->read_errors++;
      return;
    }
    if (write(s->peer, buf, (size_t)n) == n) {
      s->packets++;
      s->bytes += (unsigned long long)n;
    } else {
      s->write_errors++;
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: forward TUN_A TUN_B\n");
    return 2;
  }
  struct side sides[2] = {{0}, {0}};
  sides[0].fd = open_tun(argv[1]);
  sides[1].fd = open_tun(argv[2]);
  sides[0].peer = sides[1].fd;
  sides[1].peer = sides[0].fd;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < 2; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sides[i].fd, &ev) < 0) {
      fprintf(stderr, "forward: epoll: %s\n", strerror(errno));
      return 1;
    }
  }
  static unsigned char buf[BUFFER_SIZE];
  printf("ready\n");
  fflush(stdout);

  struct epoll_event events[2];
  while (!stopping) {
    int n = epoll_wait(ep, events, 2, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "forward: epoll_wait: %s\n", strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; i++) drain(&sides[events[i].data.u32], buf);
  }
  printf("{\"aToB\":{\"packets\":%llu,\"bytes\":%llu,\"writeErrors\":%llu,\"readErrors\":%llu},"
         "\"bToA\":{\"packets\":%llu,\"bytes\":%llu,\"writeErrors\":%llu,\"readErrors\":%llu}}\n",
         sides[0].packets, sides[0].bytes, sides[0].write_errors, sides[0].read_errors, sides[1].packets, sides[1].bytes,
         sides[1].write_errors, sides[1].read_errors);
  return 0;
}
