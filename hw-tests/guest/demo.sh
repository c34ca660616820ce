# `make demo`: the appliance in one boot. Two emulated NVMe drives are taken from the kernel
# (setup.sh), identified and exercised by vfnvme from user space, then given back.
#
# Then both drives are exported over NVMe/TCP by `vfnvme serve` and used by the Linux kernel's
# own initiator (nvme-cli, nvme-tcp) and fio, as a remote host would.
#
# Each phase is a function; the list at the bottom is the demo. To add a phase, write
# `phase_NAME` and add NAME to DEMO_PHASES. Steps print `VFNVME-STEP:` lines, which the host
# shows as headings. The serve/connect helpers are in lib.sh.

DEMO_DRIVES="$DRIVE0_BDF $DRIVE1_BDF"
DEMO_HUGEMEM=${DEMO_HUGEMEM:-256}
DEMO_PERF_SECONDS=${DEMO_PERF_SECONDS:-3}
# Poll groups of `vfnvme serve`.
DEMO_SERVE_CORES=${DEMO_SERVE_CORES:-2}
DEMO_NQN0=nqn.2026-11.io.vfnvme:demo0
DEMO_NQN1=nqn.2026-11.io.vfnvme:demo1

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

phase_fabric() {
	step "vfnvme serve: export both drives over NVMe/TCP (127.0.0.1:4420, discovery on :8009)"
	write_serve_config /tmp/demo-serve.toml "$DEMO_SERVE_CORES" \
		"$DEMO_NQN0=$DRIVE0_BDF" "$DEMO_NQN1=$DRIVE1_BDF"
	serve_start demo_serve /tmp/demo-serve.toml
	step "nvme discover: what the target offers"
	ensure_hostnqn
	run nvme discover -t tcp -a 127.0.0.1 -s 8009
	step "nvme connect: the kernel's NVMe/TCP initiator attaches both subsystems"
	connect_tcp "$DEMO_NQN0" 4420
	connect_tcp "$DEMO_NQN1" 4420
	run nvme list
	fabric0=$(fabric_block "$DEMO_NQN0")
	fabric1=$(fabric_block "$DEMO_NQN1")
	run sh -c "nvme id-ctrl /dev/$fabric0 | grep -E '^(sn|mn|fr|mdts|subnqn) +:'"
	step "fio over the fabric: 4 KiB random writes with crc32c verification, QD16, both drives at once"
	run fio --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
		--verify=crc32c --verify_fatal=1 --group_reporting \
		--name=demo0 --filename="/dev/$fabric0" --size=8M \
		--name=demo1 --filename="/dev/$fabric1" --size=8M
	step "fio over the fabric: 4 KiB random reads, QD16, ${DEMO_PERF_SECONDS} s"
	run fio --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=16 \
		--time_based --runtime="$DEMO_PERF_SECONDS" --name=demo0 --filename="/dev/$fabric0"
	step "nvme disconnect, then SIGTERM to vfnvme serve (a clean exit: status 0)"
	disconnect_tcp "$DEMO_NQN0"
	disconnect_tcp "$DEMO_NQN1"
	serve_stop
	expect_eq "$(capture_rc demo_serve)" 0 "exit status of vfnvme serve after SIGTERM"
}

phase_release() {
	step "setup.sh reset: give the drives back to the kernel nvme driver"
	run setup.sh reset
	for drive in $DEMO_DRIVES; do
		expect_driver "$drive" nvme
	done
}

DEMO_PHASES=${DEMO_PHASES:-"bind identify local_io fabric release"}
for phase in $DEMO_PHASES; do
	"phase_$phase"
done
