#!/usr/bin/env bash
# The demo: a CTI backend that refuses duplicate client IPs, agents without vipnat (refused) and with it (served and called back).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (it builds network namespaces): run 'sudo make demo'" >&2
  exit 1
fi

SESSIONS=${SESSIONS:-5}
POOL=${POOL:-198.19.7.0/28}
LAB=vnlab-demo$$
BACKEND=198.18.0.2
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  scripts/lab.sh down "$LAB"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "lab: namespace $LAB-gw (vipnat's uplink, 198.18.0.1) <-veth-> $LAB-be (backend, $BACKEND)"
scripts/lab.sh up "$LAB"

say "1. without vipnat: two agents on one machine share one IP, and the backend refuses the second"
ip netns exec "$LAB-be" node examples/cti-backend.mjs --port 5061 --timeout-ms 15000 &
pids+=($!)
sleep 0.5
ip netns exec "$LAB-gw" node examples/cti-agent.mjs --backend "$BACKEND:5061" --name alice --hold-ms 1500 &
alice=$!
sleep 0.5
ip netns exec "$LAB-gw" node examples/cti-agent.mjs --backend "$BACKEND:5061" --name bob --listen-port 9001 || true
wait "$alice" || true
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
pids=()

say "2. with vipnat: $SESSIONS sessions of the same agent, each with its own VIP from $POOL, all listening on port 9000"
ip netns exec "$LAB-be" node examples/cti-backend.mjs --port 5060 --expect "$SESSIONS" --timeout-ms 30000 &
backend=$!
pids+=("$backend")
sleep 0.5
# vipnat runs in the gateway namespace: that namespace is its uplink.
status=0
nsenter --net="/run/netns/$LAB-gw" ./bin/vipnat run --pool "$POOL" --sessions "$SESSIONS" -- \
  node examples/cti-agent.mjs --backend "$BACKEND:5060" --hold-ms 2000 || status=$?
wait "$backend" || status=$?

say "result"
if [ "$status" -eq 0 ]; then
  echo "demo: ok: the backend served $SESSIONS agents from $SESSIONS distinct IPs and called each back on its own VIP:9000"
else
  echo "demo: failed (status $status)" >&2
fi
exit "$status"
