#!/usr/bin/env bash
# Installs the Debian packages `make bench` uses (iperf3, slirp4netns, passt for pasta, wrk, nginx), only those whose command is missing.
# `setup-bench.sh flood`: those of `make bench-flood` instead (a C compiler for its generator).
set -euo pipefail

# command:package pairs
if [ "${1:-}" = flood ]; then
  needs=(
    cc:gcc
    ss:iproute2
    ping:iputils-ping
  )
else
  needs=(
    iperf3:iperf3
    slirp4netns:slirp4netns
    pasta:passt
    wrk:wrk
    nginx:nginx-light
    ss:iproute2
    ping:iputils-ping
  )
fi

missing=()
for pair in "${needs[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
[ ${#missing[@]} -gt 0 ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-bench: missing packages ${missing[*]}; run as root to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# nginx-light is gone from newer Debian releases: take nginx there.
if printf '%s\n' "${missing[@]}" | grep -qx nginx-light && ! apt-cache show nginx-light >/dev/null 2>&1; then
  missing=("${missing[@]/nginx-light/nginx}")
fi
# The packages' services (nginx on port 80, an iperf3 daemon) must not start on the machine's own
# network: the benchmarks start their own servers inside the lab. Forbid service starts while installing.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
  trap 'rm -f "$policy"' EXIT
fi
echo "setup-bench: installing ${missing[*]}"
apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
[ "$own_policy" = 0 ] || rm -f "$policy"
# Installed as a tool, not a service: keep it from starting at the next boot either.
if printf '%s\n' "${missing[@]}" | grep -q '^nginx' && command -v systemctl >/dev/null 2>&1; then
  systemctl disable nginx >/dev/null 2>&1 || true
fi
