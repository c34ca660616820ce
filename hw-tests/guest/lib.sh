# Helpers for hw-tests scenarios (sourced by the guest's init before the scenario, which runs
# under `sh -e`). Every check prints what it expected, so the host's failure message (the tail
# of the console) explains itself.

# Names the step that is running; the result marker reports the last one named.
step() {
	echo "$*" >/tmp/vfnvme-step
	echo "VFNVME-STEP: $*"
}

fail() {
	echo "VFNVME-CHECK-FAILED: [$(cat /tmp/vfnvme-step)] $*"
	exit 1
}

# Runs a command, echoing it first; a non-zero exit fails the scenario.
run() {
	echo "+ $*"
	"$@" || fail "exit $? from: $*"
}

# Runs a command that must fail.
run_expect_failure() {
	echo "+ (must fail) $*"
	if "$@"; then
		fail "succeeded but must fail: $*"
	fi
}

# capture NAME COMMAND...: runs COMMAND, keeps its stdout, stderr and exit code in
# /tmp/capture/NAME.{out,err,rc} and prints them between markers for the host to parse.
# Never fails by itself: the scenario or the host checks the result.
capture() {
	cap_name=$1
	shift
	echo "+ $*"
	cap_rc=0
	"$@" >"/tmp/capture/$cap_name.out" 2>"/tmp/capture/$cap_name.err" || cap_rc=$?
	echo "$cap_rc" >"/tmp/capture/$cap_name.rc"
	emit_capture "$cap_name"
}

# Like `capture` but prints nothing, for commands run in parallel (`capture_silent ... &`);
# print the results afterwards with `emit_capture NAME`.
capture_silent() {
	cs_name=$1
	shift
	cs_rc=0
	"$@" >"/tmp/capture/$cs_name.out" 2>"/tmp/capture/$cs_name.err" || cs_rc=$?
	echo "$cs_rc" >"/tmp/capture/$cs_name.rc"
}

# Prints a capture made by `capture` or `capture_silent`.
emit_capture() {
	echo "VFNVME-CAPTURE-BEGIN $1 rc=$(cat "/tmp/capture/$1.rc")"
	cat "/tmp/capture/$1.out"
	echo
	echo "VFNVME-CAPTURE-STDERR $1"
	cat "/tmp/capture/$1.err"
	echo
	echo "VFNVME-CAPTURE-END $1"
}

capture_rc() { cat "/tmp/capture/$1.rc"; }

expect_eq() {
	[ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

# expect_grep PATTERN FILE [WHAT]
expect_grep() {
	grep -q -e "$1" "$2" || fail "${3:-$2} does not contain '$1': $(cat "$2")"
}

expect_no_grep() {
	if grep -q -e "$1" "$2"; then
		fail "${3:-$2} contains '$1': $(cat "$2")"
	fi
}

driver_of() {
	if [ -e "/sys/bus/pci/devices/$1/driver" ]; then
		basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
	else
		echo none
	fi
}

expect_driver() {
	expect_eq "$(driver_of "$1")" "$2" "driver of $1"
}

# The first namespace block device (nvme0n1) of a drive bound to nvme, or nothing.
block_of() {
	for bo_ns in "/sys/bus/pci/devices/$1"/nvme/nvme*/nvme*n1; do
		[ -e "$bo_ns" ] && basename "$bo_ns" && return 0
	done
	return 0
}

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or time is up.
wait_until() {
	wu_deadline=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$wu_deadline" ] || fail "timed out waiting for: $*"
		sleep 0.1
	done
}

hugepages_total() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages; }

# Sets DRIVE<k>_BDF from the serial the host gave each drive (env.sh sets DRIVE<k>_SERIAL),
# so scenarios need not know how QEMU numbered the PCI buses.
resolve_drives() {
	rd_index=0
	while [ "$rd_index" -lt "$DRIVE_COUNT" ]; do
		eval "rd_serial=\$DRIVE${rd_index}_SERIAL"
		rd_bdf=""
		for rd_ctrl in /sys/class/nvme/nvme*; do
			if [ "$(tr -d ' ' <"$rd_ctrl/serial")" = "$rd_serial" ]; then
				rd_bdf=$(basename "$(readlink "$rd_ctrl/device")")
			fi
		done
		[ -n "$rd_bdf" ] || fail "no NVMe controller has serial $rd_serial"
		eval "DRIVE${rd_index}_BDF=$rd_bdf"
		echo "VFNVME-GUEST: drive $rd_index serial $rd_serial at $rd_bdf ($(block_of "$rd_bdf"))"
		rd_index=$((rd_index + 1))
	done
}

# Asks the host to hot-remove drive K (which must be `behind_root_port`) through QMP
# device_del; wait for /sys/bus/pci/devices/$DRIVE<K>_BDF to vanish afterwards.
request_device_del() {
	eval "rdd_id=\$DRIVE${1}_QEMU_ID"
	echo "VFNVME-HOST-REQUEST: device_del $rdd_id"
}
