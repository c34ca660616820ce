# Hardware-in-the-loop targets (owned by hw-tests/), included by the top-level Makefile.
# The hw tests also run as part of `cargo test --workspace`; these targets are shortcuts.

CARGO ?= cargo
HW_TEST_FLAGS ?= --test-threads=1

.PHONY: release-bin guest hw-test bench-hw

# The release binary the guest runs (the harness also builds it; this surfaces errors early).
release-bin:
	$(CARGO) build --release -p vfnvme-tools --bin vfnvme

# Downloads the guest kernel into the cache and builds the guest image.
guest: release-bin
	$(CARGO) run -q -p vfnvme-hw-tests --bin vfnvme-hw-guest

# Boots QEMU guests (emulated NVMe behind an emulated IOMMU) and runs every hw scenario.
# Boots are serialized by the harness; one test thread keeps the output readable;
# --no-fail-fast runs every scenario even when an earlier one fails.
hw-test: host-deps release-bin
	$(CARGO) test --no-fail-fast -p vfnvme-hw-tests -- $(HW_TEST_FLAGS)

# In one guest boot, on two drives of the same emulated model: fio on the kernel nvme driver vs
# vfnvme perf (local), and nvmet-tcp vs vfnvme serve read by the kernel's NVMe/TCP initiator
# with fio (fabric), the same without a drive (fabric-floor: null_blk vs a RAM namespace) and,
# with SPDK_DIR set to an SPDK you built, spdk_nvme_perf vs vfnvme perf (spdk-local) and
# nvmf_tgt vs vfnvme serve (spdk-fabric); prints Markdown tables (medians of 3 interleaved runs
# and the ratios) for BENCHMARKS.md. BENCH_HW=local|fabric|fabric-floor|spdk-local|spdk-fabric
# runs one comparison only, BENCH_HW=spdk both SPDK ones. BENCH_HW_KERNEL_ARGS adds guest kernel
# arguments for an experiment (e.g. idle=poll); BENCH_HW_PROFILE=1 (or 16) profiles one more QD1 (QD16) run of
# each side with the host's perf (linux-perf) and prints the reports after the tables;
# BENCH_HW_SERVE_TARGET adds lines to every vfnvme serve's [target] (e.g. c2h_success = true).
BENCH_HW ?= all
bench-hw: host-deps release-bin
	$(CARGO) run --release -q -p vfnvme-hw-tests --bin vfnvme-hw-bench -- $(BENCH_HW)

