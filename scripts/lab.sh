#!/usr/bin/env bash
# The test lab: a gateway namespace (vipnat's uplink) and a backend namespace joined by a veth pair.
#
#   direct:  NAME-gw  be0 198.18.0.1/24  <--veth-->  gw0 198.18.0.2/24  NAME-be
#                         fd00:18::1/64                  fd00:18::2/64
#            (vipnat runs here)                      (servers; default routes via the gateway)
#
#   routed:  NAME-gw  rt0 198.18.1.1/24  <--veth, MTU-->  gw0 198.18.1.2/24  NAME-rt
#                         fd00:18:1::1/64                     fd00:18:1::2/64
#            (default via the router)                     be0 198.18.0.1/24, fd00:18::1/64  <--veth-->  NAME-be as above
#            NAME-rt forwards, and routes the pools (198.19.0.0/16, fd00:19::/32) back to the gateway.
#
#   kernel:  NAME-k  eth0 198.18.200.2/30  <--veth-->  k0 198.18.200.1/30  NAME-gw
#            (default via the gateway, which forwards: the kernel's own path, for benchmarks; outside
#            198.19.0.0/16, the pools vipnat runs with in the lab, which vipnat refuses to overlap)
#   bare:    NAME-SUFFIX (default NAME-s), an empty namespace with lo up (for slirp4netns or pasta
#            to attach to, or a TUN to be moved into)
#
#   lan:     a LAN: a bridge (br0, in NAME-sw) joining NAME-gw (lan0 198.18.100.1/24, fd00:100::1/64)
#            and NAME-be (lan0 198.18.100.2/24, fd00:100::2/64), neither with a default route: the
#            backend reaches only its own subnet, as on a LAN whose router nobody may touch.
#            `lab.sh lanhost NAME SUFFIX ADDR4/LEN ADDR6/LEN` adds NAME-SUFFIX to it (another host,
#            another gateway).
#
# In the direct shape, MTU (default 1500) is the MTU of the gateway-backend link;
# `lab.sh mtu NAME MTU` changes it, and the kernel link's, on a lab that is up.
#
# Nothing connects the lab to the machine's own namespace, so no lab packet can
# leave the machine.
# `lab.sh down NAME` removes every namespace NAME-*, with what runs in them.
#
# Usage: lab.sh up NAME [routed|direct|lan [MTU]] | lab.sh kernel NAME [MTU] | lab.sh bare NAME [SUFFIX]
#        | lab.sh lanhost NAME SUFFIX ADDR4/LEN ADDR6/LEN
#        | lab.sh mtu NAME MTU | lab.sh down NAME | lab.sh sweep PREFIX
set -euo pipefail

GW_ADDR=198.18.0.1
BE_ADDR=198.18.0.2
GW_ADDR6=fd00:18::1
BE_ADDR6=fd00:18::2

up() {
  local name=$1 shape=${2:-direct} mtu=${3:-1500}
  if [ "$shape" = lan ]; then
    lan "$name"
    return
  fi
  down "$name"
  ip netns add "$name-gw"
  ip netns add "$name-be"
  ip -n "$name-gw" link set lo up
  ip -n "$name-be" link set lo up
  if [ "$shape" = routed ]; then
    ip netns add "$name-rt"
    ip -n "$name-rt" link set lo up
    ip netns exec "$name-rt" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip -n "$name-gw" link add rt0 mtu "$mtu" type veth peer name gw0 mtu "$mtu" netns "$name-rt"
    ip -n "$name-gw" addr add 198.18.1.1/24 dev rt0
    ip -n "$name-gw" addr add fd00:18:1::1/64 dev rt0 nodad
    ip -n "$name-gw" link set rt0 up
    ip -n "$name-gw" route add default via 198.18.1.2
    ip -n "$name-gw" route add ::/0 via fd00:18:1::2
    ip -n "$name-rt" addr add 198.18.1.2/24 dev gw0
    ip -n "$name-rt" addr add fd00:18:1::2/64 dev gw0 nodad
    ip -n "$name-rt" link set gw0 up
    ip -n "$name-rt" route add 198.19.0.0/16 via 198.18.1.1
    ip -n "$name-rt" route add fd00:19::/32 via fd00:18:1::1
    ip -n "$name-rt" link add be0 type veth peer name gw0 netns "$name-be"
    ip -n "$name-rt" addr add "$GW_ADDR/24" dev be0
    ip -n "$name-rt" addr add "$GW_ADDR6/64" dev be0 nodad
    ip -n "$name-rt" link set be0 up
  else
    ip -n "$name-gw" link add be0 mtu "$mtu" type veth peer name gw0 mtu "$mtu" netns "$name-be"
    ip -n "$name-gw" addr add "$GW_ADDR/24" dev be0
    ip -n "$name-gw" addr add "$GW_ADDR6/64" dev be0 nodad
    ip -n "$name-gw" link set be0 up
  fi
  ip -n "$name-be" addr add "$BE_ADDR/24" dev gw0
  ip -n "$name-be" addr add "$BE_ADDR6/64" dev gw0 nodad
  ip -n "$name-be" link set gw0 up
  ip -n "$name-be" route add default via "$GW_ADDR"
  ip -n "$name-be" route add ::/0 via "$GW_ADDR6"
  # Resolve the neighbours now, so that tests don't race address resolution.
  ip netns exec "$name-be" ping -c 1 -W 2 "$GW_ADDR" >/dev/null 2>&1 || true
  ip netns exec "$name-be" ping -6 -c 1 -W 2 "$GW_ADDR6" >/dev/null 2>&1 || true
  if [ "$shape" = routed ]; then
    ip netns exec "$name-gw" ping -c 1 -W 2 "$BE_ADDR" >/dev/null 2>&1 || true
    ip netns exec "$name-gw" ping -6 -c 1 -W 2 "$BE_ADDR6" >/dev/null 2>&1 || true
  fi
}

lan() {
  local name=$1
  down "$name"
  ip netns add "$name-sw"
  ip -n "$name-sw" link set lo up
  ip -n "$name-sw" link add br0 type bridge mcast_snooping 0
  ip -n "$name-sw" link set br0 up
  lanhost "$name" gw 198.18.100.1/24 fd00:100::1/64
  lanhost "$name" be 198.18.100.2/24 fd00:100::2/64
}

# A namespace NAME-SUFFIX (made if missing) joined to the LAN's bridge by lan0, with these addresses.
lanhost() {
  local name=$1 suffix=$2 a4=$3 a6=$4 ns="$1-$2"
  ip netns list | awk '{print $1}' | grep -qx -- "$ns" || { ip netns add "$ns"; ip -n "$ns" link set lo up; }
  ip -n "$name-sw" link add "p-$suffix" type veth peer name lan0 netns "$ns"
  ip -n "$name-sw" link set "p-$suffix" master br0 up
  ip -n "$ns" addr add "$a4" dev lan0
  ip -n "$ns" addr add "$a6" dev lan0 nodad
  ip -n "$ns" link set lan0 up
}

# A client namespace routed by the kernel through the gateway: the physical limit of the lab.
kernel() {
  local name=$1 mtu=${2:-1500}
  drop_ns "$name-k"
  ip netns add "$name-k"
  ip -n "$name-k" link set lo up
  ip -n "$name-gw" link add k0 mtu "$mtu" type veth peer name eth0 mtu "$mtu" netns "$name-k"
  ip -n "$name-gw" addr add 198.18.200.1/30 dev k0
  ip -n "$name-gw" link set k0 up
  ip -n "$name-k" addr add 198.18.200.2/30 dev eth0
  ip -n "$name-k" link set eth0 up
  ip -n "$name-k" route add default via 198.18.200.1
  ip netns exec "$name-gw" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$name-k" ping -c 1 -W 2 "$BE_ADDR" >/dev/null 2>&1 || true
}

bare() {
  local ns="$1-${2:-s}"
  drop_ns "$ns"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
}

# Sets the MTU of the gateway-backend link (direct shape) and of the kernel link when there is one.
set_mtu() {
  local name=$1 mtu=$2
  ip -n "$name-gw" link set be0 mtu "$mtu"
  ip -n "$name-be" link set gw0 mtu "$mtu"
  if ip -n "$name-gw" link show k0 >/dev/null 2>&1; then
    ip -n "$name-gw" link set k0 mtu "$mtu"
    ip -n "$name-k" link set eth0 mtu "$mtu"
  fi
}

# Kills what runs in a namespace, then deletes it; quiet when it is not there.
drop_ns() {
  local ns=$1 all
  # Not `ip netns list | ... | grep -q`: grep -q quits at the first match, the writer before it dies
  # of SIGPIPE, and with pipefail the pipeline fails: a long list (many namespaces on the machine)
  # then made a namespace that is there look absent, and it was left behind.
  all=$(ip netns list | awk '{print $1}')
  grep -qx -- "$ns" <<<"$all" || return 0
  local pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null || true
    sleep 0.2
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  fi
  ip netns del "$ns" 2>/dev/null || true
}

# The clients first (NAME-k, NAME-s and any other), then the gateway, the router and the backend.
down() {
  local name=$1 ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$name-" | grep -vx -e "$name-gw" -e "$name-rt" -e "$name-be" || true); do
    drop_ns "$ns"
  done
  drop_ns "$name-gw"
  drop_ns "$name-rt"
  drop_ns "$name-be"
}

# Removes every lab whose name starts with PREFIX (leftovers of interrupted runs).
sweep() {
  local prefix=$1 ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
    drop_ns "$ns"
  done
}

case "${1:-}" in
  up) up "${2:?lab name}" "${3:-direct}" "${4:-1500}" ;;
  lanhost) lanhost "${2:?lab name}" "${3:?suffix}" "${4:?IPv4 address/length}" "${5:?IPv6 address/length}" ;;
  kernel) kernel "${2:?lab name}" "${3:-1500}" ;;
  bare) bare "${2:?lab name}" "${3:-s}" ;;
  mtu) set_mtu "${2:?lab name}" "${3:?mtu}" ;;
  down) down "${2:?lab name}" ;;
  sweep) sweep "${2:?prefix}" ;;
  *) echo "usage: $0 up NAME [routed|direct|lan [MTU]] | lanhost NAME SUFFIX ADDR4/LEN ADDR6/LEN | kernel NAME [MTU] | bare NAME [SUFFIX] | mtu NAME MTU | down NAME | sweep PREFIX" >&2; exit 2 ;;
esac
