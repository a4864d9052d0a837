#!/usr/bin/env bash
# make docker-test: vipnat's image against a real Docker engine, from a fresh machine.
#  1. installs the engine and the tools (docker.io, docker-compose, mmdebstrap) when missing;
#  2. uses the engine that runs, or starts one of its own (no bridge, no iptables, no forwarding: nothing it runs can
#     reach past its own internal networks) and stops it at the end, by pid;
#  3. builds the local bases (docker/base.sh: no image registry) and the image (docker/Dockerfile);
#  4. runs docker/compose.yaml and checks the backend saw AGENTS distinct addresses;
#  5. attaches a running container (vipnat attach --container) and checks its VIP at the backend.
# It removes every container, network and image it made, and says what it could not.
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTS=${AGENTS:-10}
TAG=vnt$$
IMAGE=vipnat:$TAG
RUNTIME_BASE=vipnat-local/node:$TAG
BUILD_BASE=vipnat-local/node-build:$TAG
WORK=$(mktemp -d /tmp/vipnat-docker-XXXXXX)
own_dockerd=
failed=0
left=()

say() { printf '\n== %s\n' "$*"; }
fail() {
  echo "docker-test: FAILED: $*" >&2
  failed=1
}

[ "$(id -u)" -eq 0 ] || { echo "docker-test: needs root (a Docker engine, namespaces)" >&2; exit 1; }
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
# vipnat's own checkout is the client of the attach step.
[ -e dist/cli/main.js ] || make -s build

# Docker warns that its engine forwards nothing: that is this test's engine, on purpose.
quiet() { grep -v 'IPv4 forwarding is disabled' >&2 || true; }

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

cleanup() {
  set +e
  say "cleaning up"
  for c in "$TAG-gw" "$TAG-be" "$TAG-app"; do docker rm -f "$c" >/dev/null 2>&1; done
  (cd docker && VIPNAT_IMAGE=$IMAGE compose -p "$TAG" -f compose.yaml down --remove-orphans >/dev/null 2>&1)
  docker network rm "$TAG-net" >/dev/null 2>&1
  for i in "$IMAGE" "$RUNTIME_BASE" "$BUILD_BASE"; do docker rmi -f "$i" >/dev/null 2>&1; done
  docker image prune -f --filter "label=vipnat-docker-test=$TAG" >/dev/null 2>&1
  for c in $(docker ps -aq --filter "name=^$TAG" 2>/dev/null); do left+=("container $c"); done
  for n in $(docker network ls -q --filter "name=^$TAG" 2>/dev/null); do left+=("network $n"); done
  for i in "$IMAGE" "$RUNTIME_BASE" "$BUILD_BASE"; do docker image inspect "$i" >/dev/null 2>&1 && left+=("image $i"); done
  rm -f docker/ca/extra.pem
  if [ -n "$own_dockerd" ]; then
    kill "$own_dockerd" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$own_dockerd" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$own_dockerd" 2>/dev/null && { kill -9 "$own_dockerd" 2>/dev/null; left+=("dockerd $own_dockerd (killed)"); }
    # Its containers' mounts, if a kill left any, before its data goes.
    grep " $WORK/" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  fi
  rm -rf "$WORK" 2>/dev/null || left+=("$WORK")
  if [ ${#left[@]} -gt 0 ]; then echo "docker-test: could not undo: ${left[*]}" >&2; else echo "docker-test: everything it made is gone"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if docker info >/dev/null 2>&1; then
  say "using the Docker engine that runs ($(docker version --format '{{.Server.Version}}'))"
else
  say "starting a Docker engine of its own (data in $WORK)"
  # No default bridge, no iptables rules, no forwarding, no masquerading: the machine's namespace stays as it was.
  dockerd --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/docker.pid" --host "unix://$WORK/docker.sock" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
  own_dockerd=$!
  export DOCKER_HOST="unix://$WORK/docker.sock"
  for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { tail -5 "$WORK/dockerd.log" >&2; echo "docker-test: the engine did not start" >&2; exit 1; }
fi

t0=$SECONDS
say "building the bases without a registry (docker/base.sh)"
docker/base.sh "$RUNTIME_BASE" "$BUILD_BASE"

say "building $IMAGE (docker/Dockerfile)"
# A proxy's certificates and a registry of the machine's own reach the build's npm ci, and nothing else.
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -s "$NODE_EXTRA_CA_CERTS" ]; then cp "$NODE_EXTRA_CA_CERTS" docker/ca/extra.pem; fi
registry=$(npm config get registry 2>/dev/null || true)
docker build -q --network host --label "vipnat-docker-test=$TAG" \
  --build-arg BUILD_BASE="$BUILD_BASE" --build-arg BASE="$RUNTIME_BASE" --build-arg NPM_CONFIG_REGISTRY="$registry" \
  -f docker/Dockerfile -t "$IMAGE" . >/dev/null
docker image ls "$IMAGE" --format '  {{.Repository}}:{{.Tag}} {{.Size}}'
if docker run --rm --network none --entrypoint sh "$IMAGE" -c 'command -v cc gcc' >/dev/null 2>&1; then fail "the image has a C compiler"; fi
if [ -n "$(docker run --rm --network none --entrypoint sh "$IMAGE" -c 'ls /opt/vipnat/node_modules | grep -E "^(typescript|vitest|eslint)$"')" ]; then
  fail "the image has dev dependencies"
fi
echo "  built in $((SECONDS - t0)) s"

say "compose: $AGENTS agents through vipnat against a backend that refuses duplicate addresses"
t1=$SECONDS
status=0
(cd docker && VIPNAT_IMAGE=$IMAGE AGENTS=$AGENTS compose -p "$TAG" -f compose.yaml up --abort-on-container-exit --exit-code-from backend) \
  >"$WORK/compose.log" 2>&1 || status=$?
grep -E "backend: summary|backend:   " "$WORK/compose.log" | sed 's/^.*| //' || true
distinct=$(grep -oE "summary distinct-ips [0-9]+" "$WORK/compose.log" | awk '{print $3}' | tail -1)
if [ "$status" -ne 0 ] || [ "${distinct:-0}" -ne "$AGENTS" ]; then
  tail -30 "$WORK/compose.log" >&2
  fail "compose: status $status, the backend saw ${distinct:-0} distinct addresses of $AGENTS"
else
  echo "  the backend saw $distinct distinct addresses ($((SECONDS - t1)) s)"
fi
(cd docker && VIPNAT_IMAGE=$IMAGE compose -p "$TAG" -f compose.yaml down --remove-orphans >/dev/null 2>&1) || true

say "attach: a running container gets a VIP from a gateway in another container"
docker network create --internal --subnet 172.31.78.0/24 --ip-range 172.31.78.0/26 "$TAG-net" >/dev/null
rundir="$WORK/run"
mkdir -p "$rundir"
docker run -d --name "$TAG-be" --network "$TAG-net" --ip 172.31.78.10 --entrypoint node "$IMAGE" \
  /opt/vipnat/examples/cti-backend.mjs --port 5060 --expect 1 --timeout-ms 60000 >/dev/null 2> >(quiet)
# The gateway sees the machine's processes (--pid host) and may enter their namespaces (SYS_PTRACE), as slirp4netns
# and pasta attaching by pid must; its control socket is in a directory of ours, for the attach from here.
docker run -d --name "$TAG-gw" --network "$TAG-net" --ip 172.31.78.2 --pid host -v "$rundir:/run/vipnat" \
  --cap-add NET_ADMIN --cap-add SYS_ADMIN --cap-add SYS_PTRACE --device /dev/net/tun "$IMAGE" up --pool 172.31.78.200-172.31.78.209 >/dev/null 2> >(quiet)
# The application: started before vipnat is asked, it waits for its VIP, then registers with the backend.
docker run -d --name "$TAG-app" --network "$TAG-net" --entrypoint sh "$IMAGE" -c \
  'while ! ip -4 addr show | grep -q "inet 172.31.78.2[0-9][0-9]/32"; do sleep 0.2; done
   exec node /opt/vipnat/examples/cti-agent.mjs --backend 172.31.78.10:5060 --name app --hold-ms 2000' >/dev/null 2> >(quiet)
for _ in $(seq 100); do [ -S "$rundir/default.sock" ] && break; sleep 0.2; done
app_before=$(docker exec "$TAG-app" ip -o addr show eth0 | awk '{print $4}' | sort | tr '\n' ' ')
if VIPNAT_RUN_DIR=$rundir ./bin/vipnat attach --container "$TAG-app" --route 172.31.78.10/32; then
  VIPNAT_RUN_DIR=$rundir ./bin/vipnat ls
  code=$(docker wait "$TAG-be")
  docker logs "$TAG-be" 2>&1 | grep -E "summary|   172" || true
  if [ "$code" -ne 0 ] || ! docker logs "$TAG-be" 2>&1 | grep -q "172.31.78.200 agent app callback ok"; then
    docker logs "$TAG-app" >&2 || true
    docker logs "$TAG-gw" >&2 || true
    fail "attach: the backend did not see the container at its VIP 172.31.78.200 (status $code)"
  else
    echo "  the backend saw the container at its VIP 172.31.78.200, and called it back there"
  fi
  # The callback came in through vipnat (not past it, to the container's own eth0, which must not answer for the VIP).
  inbound=$(VIPNAT_RUN_DIR=$rundir ./bin/vipnat ls --json | node -e 'const s=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(s[0]?s[0].packets.in:-1)')
  if [ "${inbound:-0}" -le 0 ]; then fail "attach: no packet reached the container through vipnat (in: $inbound)"; else
    echo "  $inbound packets reached the container through vipnat"
  fi
  app_after=$(docker exec "$TAG-app" ip -o addr show eth0 2>/dev/null | awk '{print $4}' | sort | tr '\n' ' ' || true)
  [ -z "$app_after" ] || [ "$app_after" = "$app_before" ] || fail "attach: the container's eth0 changed ($app_before -> $app_after)"
  # The agent is done: its container ends, and with it the session; the VIP goes back to the pool.
  docker wait "$TAG-app" >/dev/null
  for _ in $(seq 50); do [ "$(VIPNAT_RUN_DIR=$rundir ./bin/vipnat ls --json)" = "[]" ] && break; sleep 0.2; done
  if [ "$(VIPNAT_RUN_DIR=$rundir ./bin/vipnat ls --json)" != "[]" ]; then fail "attach: the session outlived its container"; else
    echo "  the container ended, and its session with it"
  fi
else
  docker logs "$TAG-gw" >&2 || true
  fail "attach: vipnat attach --container $TAG-app failed"
fi
docker stop -t 10 "$TAG-gw" >/dev/null || true
docker logs "$TAG-gw" 2>&1 | tail -3

echo
if [ "$failed" -ne 0 ]; then echo "docker-test: FAILED" >&2; exit 1; fi
echo "docker-test: ok in $SECONDS s (image, compose with $AGENTS agents, attach)"
