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

# Model check of the poll group lifecycle (target/tests/loom_lifecycle.rs). Its own build
# directory: `--cfg loom` would otherwise invalidate the normal build.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=build/loom LOOM_MAX_PREEMPTIONS=3 \
		$(CARGO) test --release -p vfnvme-target --test loom_lifecycle

# Driver software cost per 4 KiB I/O against the simulated controller (see BENCHMARKS.md).
bench:
	$(CARGO) bench -p vfnvme-driver --bench io_cost

# The driver, simulator and target tests (lifecycle stress included) under AddressSanitizer
# (nightly toolchain).
asan:
	RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
		$(CARGO) +nightly test -p vfnvme-spec -p vfnvme-driver -p vfnvme-tcp -p vfnvme-host -p vfnvme-target --target x86_64-unknown-linux-gnu \
		--no-fail-fast

fmt:
	$(CARGO) fmt --all

# The first command of the README: boots the QEMU appliance with two emulated NVMe drives
# (downloads Debian's kernel on first use), binds them to vfio-pci, runs vfnvme on them.
.PHONY: demo
demo: host-deps release-bin
	$(CARGO) run --release -p vfnvme-hw-tests --bin vfnvme-demo

include hw-tests/hw.mk
