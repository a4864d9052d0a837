// Flood generator for bench/flood.ts: new-flow packets (TCP SYNs or UDP datagrams) from many sources at a fixed rate, through a packet socket.
//
// Every packet is a new flow: a random source address in --src (a CIDR) and a random source port
// (and, with --dport-random, a random destination port), with correct IPv4 and TCP/UDP checksums.
// Packets leave through an AF_PACKET socket bound to --iface, past the qdisc, in sendmmsg batches:
// with --mac, as Ethernet frames to that MAC (a veth toward the gateway); without, bare IP packets
// (a session's TUN). The rate is kept by the clock (a token count of rate x elapsed time), so a
// rate above what the machine can send just sends as fast as it can; 0 means as fast as it can.
//
// Usage: flood-gen --iface IF [--mac MAC] --src A.B.C.D/N --dst A.B.C.D --dport P [--dport-random]
//                  [--kind syn|udp] --rate PPS --seconds S [--seed N]
// Prints one JSON line: {"sent":N,"errors":N,"seconds":S,"pps":R}.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif

#define BATCH 64
#define MAXPKT 128

static uint32_t rng;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t sum16(const uint8_t *p, int len, uint32_t acc) {
  for (int i = 0; i + 1 < len; i += 2) acc += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len & 1) acc += (uint32_t)p[len - 1] << 8;
  return acc;
}

static uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return (uint16_t)~acc;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v & 0xff;
}

static void usage(const char *why) {
  fprintf(stderr, "flood-gen: %s\nusage: flood-gen --iface IF [--mac MAC] --src A.B.C.D/N --dst A.B.C.D --dport P [--dport-random] [--kind syn|udp] --rate PPS --seconds S [--seed N]\n", why);
  exit(2);
}

int main(int argc, char **argv) {
  const char *iface = NULL, *mac = NULL, *src = NULL, *dst = NULL, *kind = "syn";
  int dport = 0, dport_random = 0;
  double rate = 0, seconds = 1;
  rng = 0x9e3779b9u;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--dport-random")) { dport_random = 1; continue; }
    if (!v) usage("a flag without its value");
    i++;
    if (!strcmp(a, "--iface")) iface = v;
    else if (!strcmp(a, "--mac")) mac = v;
    else if (!strcmp(a, "--src")) src = v;
    else if (!strcmp(a, "--dst")) dst = v;
    else if (!strcmp(a, "--dport")) dport = atoi(v);
    else if (!strcmp(a, "--kind")) kind = v;
    else if (!strcmp(a, "--rate")) rate = atof(v);
    else if (!strcmp(a, "--seconds")) seconds = atof(v);
    else if (!strcmp(a, "--seed")) rng = (uint32_t)strtoul(v, NULL, 10) | 1;
    else usage("unknown flag");
  }
  if (!iface || !src || !dst) usage("--iface, --src and --dst are needed");
  int syn = !strcmp(kind, "syn");
  if (!syn && strcmp(kind, "udp")) usage("--kind must be syn or udp");

  char net[64];
  snprintf(net, sizeof net, "%s", src);
  char *slash = strchr(net, '/');
  int prefix = slash ? atoi(slash + 1) : 32;
  if (slash) *slash = 0;
  struct in_addr sa, da;
  if (!inet_aton(net, &sa) || !inet_aton(dst, &da) || prefix < 8 || prefix > 32) usage("bad --src or --dst");
  uint32_t base = ntohl(sa.s_addr) & (prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix));
  uint32_t span = prefix == 32 ? 1 : (1u << (32 - prefix));

  uint8_t dmac[6] = {0};
  int l2 = 0;
  if (mac) {
    if (sscanf(mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1], &dmac[2], &dmac[3], &dmac[4], &dmac[5]) != 6) usage("bad --mac");
    l2 = 14;
  }
  int ifindex = if_nametoindex(iface);
  if (!ifindex) { perror("if_nametoindex"); return 1; }
  int fd = socket(AF_PACKET, l2 ? SOCK_RAW : SOCK_DGRAM, htons(ETH_P_IP));
  if (fd < 0) { perror("socket"); return 1; }
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one); // not on every kernel: best effort
  int sndbuf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  struct sockaddr_ll ll = {0};
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_IP);
  ll.sll_ifindex = ifindex;
  ll.sll_halen = 6;
  memcpy(ll.sll_addr, dmac, 6);
  if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) { perror("bind"); return 1; }
  uint8_t smac[6] = {0};
  if (l2) {
    socklen_t len = sizeof ll;
    struct sockaddr_ll me;
    if (getsockname(fd, (struct sockaddr *)&me, &len) == 0) memcpy(smac, me.sll_addr, 6);
  }

  static uint8_t pkts[BATCH][MAXPKT];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  const int l4 = syn ? 24 : 8 + 16; // SYN with an MSS option; UDP with 16 bytes
  const int plen = l2 + 20 + l4;
  for (int i = 0; i < BATCH; i++) {
    uint8_t *p = pkts[i];
    memset(p, 0, MAXPKT);
    if (l2) {
      memcpy(p, dmac, 6);
      memcpy(p + 6, smac, 6);
      p[12] = 0x08;
    }
    uint8_t *ip = p + l2;
    ip[0] = 0x45;
    put16(ip + 2, 20 + l4);
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = syn ? 6 : 17;
    memcpy(ip + 16, &da.s_addr, 4);
    iov[i].iov_base = p;
    iov[i].iov_len = plen;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &ll;
    msgs[i].msg_hdr.msg_namelen = sizeof ll;
  }

  // Packets go in bursts of half a millisecond's worth (1-64), so that between them the generator
  // sleeps instead of spinning on the clock: its CPU is the gateway's competitor on a small machine.
  uint64_t burst = rate > 0 ? (uint64_t)(rate * 0.0005) : BATCH;
  if (burst < 1) burst = 1;
  if (burst > BATCH) burst = BATCH;
  uint64_t sent = 0, errors = 0;
  const double t0 = now_s();
  const double end = t0 + seconds;
  for (;;) {
    double t = now_s();
    if (t >= end) break;
    uint64_t due = rate > 0 ? (uint64_t)((t - t0) * rate) + 1 : sent + BATCH;
    if (due < sent + burst) {
      double wait = (double)(sent + burst - due) / rate;
      if (wait > 20e-6) {
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    int n = due - sent > BATCH ? BATCH : (int)(due - sent);
    for (int i = 0; i < n; i++) {
      uint8_t *ip = pkts[i] + l2;
      uint32_t s = htonl(base + (span > 1 ? next_rand() % span : 0));
      memcpy(ip + 12, &s, 4);
      put16(ip + 4, (uint16_t)next_rand());
      put16(ip + 10, 0);
      put16(ip + 10, fold(sum16(ip, 20, 0)));
      uint8_t *t4 = ip + 20;
      put16(t4, 1024 + next_rand() % 64512);
      put16(t4 + 2, (uint16_t)(dport_random ? 1 + next_rand() % 65535 : (uint32_t)dport));
      if (syn) {
        uint32_t seq = next_rand();
        memcpy(t4 + 4, &seq, 4);
        t4[12] = 6 << 4; // 24 bytes: the header and an MSS option
        t4[13] = 0x02;   // SYN
        put16(t4 + 14, 64240);
        t4[20] = 2;
        t4[21] = 4;
        put16(t4 + 22, 1460);
        put16(t4 + 16, 0);
      } else {
        put16(t4 + 4, 8 + 16);
        put16(t4 + 6, 0);
      }
      uint32_t acc = sum16(ip + 12, 8, 0) + (syn ? 6 : 17) + l4;
      uint16_t c = fold(sum16(t4, l4, acc));
      if (!syn && c == 0) c = 0xffff;
      put16(t4 + (syn ? 16 : 6), c);
    }
    int r = sendmmsg(fd, msgs, n, 0);
    if (r < 0) {
      errors++;
      if (errno == ENOBUFS || errno == EAGAIN) {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
      } else if (errno != EINTR) {
        perror("sendmmsg");
        return 1;
      }
      continue;
    }
    sent += (uint64_t)r;
  }
  double secs = now_s() - t0;
  printf("{\"sent\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"pps\":%.0f}\n", (unsigned long long)sent, (unsigned long long)errors, secs,
         sent / secs);
  return 0;
}
