# vipnat: build, test and demo; each target does its own setup on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := build

.PHONY: setup build check lint format test test-unit test-integration fuzz demo bench bench-flood soak clean docker-test

setup: node_modules/.installed
	@scripts/setup.sh

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# dist/: vipnat. dist-tools/: the benchmarks and the soak (bench/, test/lab/, test/soak/, compiled by
# tsconfig.tools.json; Node 20 cannot run TypeScript itself) and the bench's reference forwarder.
build: node_modules/.installed dist/vipnat-init dist-tools/reference-forward
	npx tsc -p tsconfig.json
	npx tsc -p tsconfig.tools.json

# The helper that runs each session's program in a PID namespace that dies with vipnat.
dist/vipnat-init: native/vipnat-init.c
	@mkdir -p dist
	@command -v cc >/dev/null || { echo "build: no C compiler (cc): install gcc (apt-get install gcc libc6-dev)" >&2; exit 1; }
	cc -O2 -Wall -Wextra -Werror -o $@ $<

# The bench's userspace limit: copies packets between two TUNs with vipnat's offloads, no translation.
dist-tools/reference-forward: bench/reference/forward.c
	@mkdir -p dist-tools
	@command -v cc >/dev/null || { echo "build: no C compiler (cc): install gcc (apt-get install gcc libc6-dev)" >&2; exit 1; }
	cc -O2 -Wall -Wextra -Werror -o $@ $<

# Without root, in under a minute: types of src, tests and bench, lint (with the layer rules), format, unit tests.
check: node_modules/.installed
	npx tsc -p tsconfig.test.json
	npx eslint --max-warnings 0 .
	npx prettier --check --log-level warn .
	npx vitest run --project unit

# The translator's property-based fuzz (test/unit/fuzz.test.ts) at length: VIPNAT_FUZZ_PACKETS packets
# (default 10 000 000, some minutes); it prints its seed, and VIPNAT_FUZZ_SEED=N replays one.
fuzz: node_modules/.installed
	VIPNAT_FUZZ_PACKETS=$${VIPNAT_FUZZ_PACKETS:-10000000} npx vitest run --project unit test/unit/fuzz.test.ts

lint: node_modules/.installed
	npx eslint --fix .

format: node_modules/.installed
	npx prettier --write --log-level warn .

test: check setup build
	@rm -f test-results.json
	npx vitest run --reporter=default --reporter=json --outputFile.json=test-results.json; \
	  status=$$?; [ -f test-results.json ] && node scripts/test-summary.mjs test-results.json; exit $$status

test-unit: node_modules/.installed
	npx vitest run --project unit

test-integration: setup build
	npx vitest run --project integration

demo: setup build
	scripts/demo.sh

# The image against a real Docker engine (installed, and started, if none runs): builds the bases without a registry,
# the image, runs docker/compose.yaml (AGENTS=10 agents) and attaches a running container. About a minute.
docker-test: setup build
	scripts/docker-test.sh

# Benchmarks (not tests): vipnat against the kernel, the reference forwarder, slirp4netns and pasta on one lab,
# micro-benchmarks, scale. BENCH_ARGS=--quick for a short run (node dist-tools/bench/run.js --help).
bench: setup build
	@scripts/setup-bench.sh
	node dist-tools/bench/run.js $(BENCH_ARGS)

# The soak (not a test; its 5-second short form is in make test): 200 sessions x 5 checksummed echo
# connections x 60 s through vipnat, zero loss or it fails. SOAK_ARGS to change it (node dist-tools/test/soak/soak.js --help).
soak: setup build
	node dist-tools/test/soak/soak.js $(SOAK_ARGS)

# Flood benchmark (not a test): the new-flow packet rate the gateway absorbs, and what a flood at half
# and at twice that rate does to established connections. FLOOD_ARGS, e.g. --seconds 3 (node dist-tools/bench/flood.js --help).
bench-flood: setup build
	@scripts/setup-bench.sh flood
	node dist-tools/bench/flood.js $(FLOOD_ARGS)

clean:
	rm -rf dist dist-tools node_modules
