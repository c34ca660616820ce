# `make demo`: the appliance in one boot. Two emulated NVMe drives are taken from the kernel
# (setup.sh), identified and exercised by vfnvme from user space, then given back.
#
# Each phase is a function; the list at the bottom is the demo. To add a phase (e.g. the
# NVMe/TCP export: `vfnvme serve --config ... &`, kernel `nvme connect -t tcp -a 127.0.0.1 ...`,
# fio on the /dev/nvmeXnY that appears, `nvme disconnect`, stop serve), write `phase_NAME` and
# add NAME to DEMO_PHASES. Steps print `VFNVME-STEP:` lines, which the host shows as headings.

DEMO_DRIVES="$DRIVE0_BDF $DRIVE1_BDF"
DEMO_HUGEMEM=${DEMO_HUGEMEM:-256}
DEMO_PERF_SECONDS=${DEMO_PERF_SECONDS:-3}

phase_bind() {
	step "setup.sh config: bind both drives to vfio-pci, reserve ${DEMO_HUGEMEM} MiB of hugepages"
	run env HUGEMEM="$DEMO_HUGEMEM" setup.sh config
	step "setup.sh status"
	run setup.sh status
	for drive in $DEMO_DRIVES; do
		expect_driver "$drive" vfio-pci
	done
}

phase_identify() {
	for drive in $DEMO_DRIVES; do
		step "vfnvme identify $drive"
		run vfnvme identify "$drive"
	done
}

phase_local_io() {
	for drive in $DEMO_DRIVES; do
		step "vfnvme perf -w verify on $drive: write a pattern over the whole drive, read it back, compare"
		run vfnvme perf --device "$drive" -q 16 -o 4096 -w verify -t 60
		step "vfnvme perf -w randread on $drive: 4 KiB random reads, queue depth 16, ${DEMO_PERF_SECONDS} s"
		run vfnvme perf --device "$drive" -q 16 -o 4096 -w randread -t "$DEMO_PERF_SECONDS"
	done
}

phase_release() {
	step "setup.sh reset: give the drives back to the kernel nvme driver"
	run setup.sh reset
	for drive in $DEMO_DRIVES; do
		expect_driver "$drive" nvme
	done
}

DEMO_PHASES=${DEMO_PHASES:-"bind identify local_io release"}
for phase in $DEMO_PHASES; do
	"phase_$phase"
done
