#!/usr/bin/env bash
# Installs the Debian packages vipnat's tests and demo use, only those whose command is missing.
set -euo pipefail

# command:package pairs
needs=(
  ip:iproute2
  socat:socat
  ping:iputils-ping
  nsenter:util-linux
  setpriv:util-linux
  cc:gcc
  getent:libc-bin
  unshare:util-linux
  pgrep:procps
  traceroute:traceroute
  hping3:hping3
  tcpdump:tcpdump
  strace:strace
  redis-server:redis-server
  redis-cli:redis-tools
  python3:python3
  kea-dhcp4:kea-dhcp4-server
  dnsmasq:dnsmasq-base
  udhcpc:udhcpc
  tshark:tshark
  capinfos:tshark
  promtool:prometheus
  tmux:tmux
  script:bsdutils
  curl:curl
)

missing=()
for pair in "${needs[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# vipnat-init is built with cc, which needs the C library's headers too.
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
[ -e /dev/net/tun ] || echo "setup: warning: /dev/net/tun is missing (modprobe tun)" >&2

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
