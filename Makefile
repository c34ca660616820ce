# Thin wrappers over cargo and the hw-tests harness. `make test` is what CI runs.

CARGO ?= cargo
# Hardware-in-the-loop tests boot QEMU guests one at a time.
HW_TEST_FLAGS ?= --test-threads=1

.PHONY: all build test unit-test lint loom bench asan fmt host-deps

all: build

build:
	$(CARGO) build --workspace --release

# Everything: lint, unit and simulator tests, then the QEMU hardware-in-the-loop tests.
test: host-deps lint unit-test loom hw-test

# Debian packages for QEMU-based tests and the demo (installed only when missing).
host-deps:
	hw-tests/install-host-deps.sh

unit-test:
	$(CARGO) test --workspace --exclude vfnvme-hw-tests

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 tools/check-module-graph.py
	# The fuzz targets are a workspace of their own (nightly): built here so that they follow
	# the APIs they drive rather than rot between `make fuzz` runs.
	$(CARGO) +nightly check --manifest-path fuzz/Cargo.toml --bins --target-dir build/fuzz-check

# Model check of the poll group lifecycle (target/tests/loom_lifecycle.rs). Its own build
# directory: `--cfg loom` would otherwise invalidate the normal build.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=build/loom LOOM_MAX_PREEMPTIONS=3 \
		$(CARGO) test --release -p vfnvme-target --test loom_lifecycle

# Driver software cost per 4 KiB I/O against the simulated controller (see BENCHMARKS.md).
bench:
	$(CARGO) bench -p vfnvme-driver --bench io_cost

# The NVMe/TCP target on loopback: vfnvme serve on core 0, initiators on core 1, medians of
# interleaved runs; against SPDK's nvmf_tgt and spdk_nvme_perf when SPDK_DIR points at a built
# SPDK (tools/bench-tcp.sh; RUNS, SECONDS_PER_RUN). See BENCHMARKS.md.
.PHONY: bench-tcp
bench-tcp:
	tools/bench-tcp.sh

# The driver, simulator and target tests (lifecycle stress included) under AddressSanitizer
# (nightly toolchain).
asan:
	RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
		$(CARGO) +nightly test -p vfnvme-spec -p vfnvme-driver -p vfnvme-tcp -p vfnvme-host -p vfnvme-target --target x86_64-unknown-linux-gnu \
		--no-fail-fast

fmt:
	$(CARGO) fmt --all

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer, nightly toolchain; `cargo install cargo-fuzz`):
# each target FUZZ_SECONDS on its corpus, then the executions and coverage each reached. Logs in
# build/fuzz/, a crashing input in fuzz/artifacts/. Not part of `make test`; see docs/fuzzing.md.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= pdu connection connect_data admin config auth
# Extra `cargo fuzz run` options, e.g. "-s none --target-dir build/fuzz-nosan": without
# AddressSanitizer, for 2-6 times the executions (only `connection` reaches unsafe code: the
# driver's DMA memory its RAM drive uses).
FUZZ_FLAGS ?=
.PHONY: fuzz
fuzz:
	@mkdir -p build/fuzz
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(CARGO) +nightly fuzz run $(FUZZ_FLAGS) $$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) > build/fuzz/$$t.log 2>&1 \
			|| { tail -n 40 build/fuzz/$$t.log; echo "fuzz: $$t failed, see fuzz/artifacts/$$t"; exit 1; }; \
	done
	@for t in $(FUZZ_TARGETS); do \
		grep -E '^#[0-9]+[[:space:]]+DONE' build/fuzz/$$t.log | tail -n 1 | sed -E \
			"s/^#([0-9]+)[[:space:]]+DONE[[:space:]]+cov: ([0-9]+) ft: ([0-9]+).*exec\/s: ([0-9]+).*/$$t: \1 executions, cov \2, ft \3, \4 exec\/s/"; \
	done

# The first command of the README: boots the QEMU appliance with two emulated NVMe drives
# (downloads Debian's kernel on first use), binds them to vfio-pci, runs vfnvme on them.
.PHONY: demo
demo: host-deps release-bin
	$(CARGO) run --release -p vfnvme-hw-tests --bin vfnvme-demo

include hw-tests/hw.mk
