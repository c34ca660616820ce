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
	# A running `vfnvme serve` (serve_start) explains many failures of the fabric steps.
	if [ -n "${SERVE_NAME:-}" ] && [ -f "/tmp/capture/$SERVE_NAME.err" ]; then
		echo "--- last lines of vfnvme serve's log ($SERVE_NAME) ---"
		tail -n 40 "/tmp/capture/$SERVE_NAME.err"
	fi
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

# Whether process $1 runs (a zombie that was not reaped yet does not).
alive() {
	al_state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$al_state" ] && [ "$al_state" != Z ]
}

# --- NVMe/TCP: vfnvme serve, the kernel initiator (nvme-cli), the kernel target (nvmet) ------

# What `vfnvme serve` prints on stderr once every listener accepts connections.
SERVE_READY_PATTERN=${SERVE_READY_PATTERN:-"^vfnvme: serving "}
# How long serve may take to get ready (controller init under TCG) and to stop on SIGTERM.
SERVE_READY_SECONDS=${SERVE_READY_SECONDS:-60}
SERVE_STOP_SECONDS=${SERVE_STOP_SECONDS:-30}

# write_serve_config FILE CORES NQN=BDF...: a configuration exporting each vfio-bound drive BDF
# as its own subsystem NQN (namespace 1), open to any host, on 127.0.0.1:4420, plus the
# discovery listener 127.0.0.1:8009.
write_serve_config() {
	wsc_file=$1
	wsc_cores=$2
	shift 2
	{
		printf '[target]\ncores = %s\n\n' "$wsc_cores"
		printf '[[listener]]\naddress = "127.0.0.1:4420"\n\n'
		printf '[[listener]]\naddress = "127.0.0.1:8009"\n'
		for wsc_export in "$@"; do
			printf '\n[[subsystem]]\nnqn = "%s"\nallow_any_host = true\n' "${wsc_export%%=*}"
			printf '\n[[subsystem.namespace]]\nnsid = 1\npci = "%s"\n' "${wsc_export#*=}"
		done
	} >"$wsc_file"
	echo "--- $wsc_file ---"
	cat "$wsc_file"
}

# serve_start NAME CONFIG: starts `vfnvme serve --config CONFIG` in the background (stdout and
# stderr in /tmp/capture/NAME.{out,err}, RUST_LOG=info unless SERVE_RUST_LOG says otherwise)
# and waits, bounded, for its ready line. Sets SERVE_PID and SERVE_NAME; `serve_stop` ends it.
serve_start() {
	SERVE_NAME=$1
	echo "+ vfnvme serve --config $2 &"
	RUST_LOG=${SERVE_RUST_LOG:-info} vfnvme serve --config "$2" \
		>"/tmp/capture/$1.out" 2>"/tmp/capture/$1.err" &
	SERVE_PID=$!
	ss_deadline=$(($(date +%s) + SERVE_READY_SECONDS))
	until grep -q -e "$SERVE_READY_PATTERN" "/tmp/capture/$1.err"; do
		if ! alive "$SERVE_PID"; then
			ss_rc=0
			wait "$SERVE_PID" || ss_rc=$?
			SERVE_PID=""
			fail "vfnvme serve exited with status $ss_rc before its ready line"
		fi
		[ "$(date +%s)" -lt "$ss_deadline" ] ||
			fail "vfnvme serve printed no ready line ('$SERVE_READY_PATTERN') within ${SERVE_READY_SECONDS} s"
		sleep 0.1
	done
	echo "vfnvme serve (pid $SERVE_PID) is ready: $(grep -e "$SERVE_READY_PATTERN" "/tmp/capture/$1.err" | head -n 1)"
}

# serve_stop: SIGTERM to the serve started by serve_start, waits (bounded; SIGKILL and a
# failure after SERVE_STOP_SECONDS), and prints its exit status and log as capture SERVE_NAME.
# Does not fail on a non-zero exit: check `capture_rc $SERVE_NAME`.
serve_stop() {
	echo "+ kill -TERM $SERVE_PID   # vfnvme serve"
	kill -TERM "$SERVE_PID" || fail "vfnvme serve (pid $SERVE_PID) is gone before SIGTERM"
	sst_deadline=$(($(date +%s) + SERVE_STOP_SECONDS))
	while alive "$SERVE_PID"; do
		if [ "$(date +%s)" -ge "$sst_deadline" ]; then
			kill -KILL "$SERVE_PID"
			fail "vfnvme serve did not exit within ${SERVE_STOP_SECONDS} s of SIGTERM (killed)"
		fi
		sleep 0.1
	done
	sst_rc=0
	wait "$SERVE_PID" || sst_rc=$?
	echo "$sst_rc" >"/tmp/capture/$SERVE_NAME.rc"
	emit_capture "$SERVE_NAME"
	echo "vfnvme serve exited with status $sst_rc"
	SERVE_PID=""
	SERVE_NAME=""
}

# The connected fabric controller (nvmeN, transport tcp) of subsystem NQN, or nothing.
fabric_ctrl() {
	for fc_ctrl in /sys/class/nvme/nvme*; do
		[ "$(cat "$fc_ctrl/transport" 2>/dev/null)" = tcp ] || continue
		[ "$(cat "$fc_ctrl/subsysnqn" 2>/dev/null)" = "$1" ] || continue
		basename "$fc_ctrl"
		return 0
	done
	return 0
}

# fabric_block NQN [NSID]: the block device (nvmeXnY) of namespace NSID (default 1) of the
# connected subsystem NQN, or nothing. With native multipath the disk hangs off the
# subsystem, otherwise off the controller.
fabric_block() {
	fb_nsid=${2:-1}
	for fb_dir in /sys/class/nvme-subsystem/nvme-subsys* "/sys/class/nvme/$(fabric_ctrl "$1")"; do
		[ "$(cat "$fb_dir/subsysnqn" 2>/dev/null)" = "$1" ] || continue
		for fb_disk in "$fb_dir"/nvme*n*; do
			case "$(basename "$fb_disk")" in *c*) continue ;; esac
			[ "$(cat "$fb_disk/nsid" 2>/dev/null)" = "$fb_nsid" ] || continue
			[ -b "/dev/$(basename "$fb_disk")" ] || continue
			basename "$fb_disk"
			return 0
		done
	done
	return 0
}

has_fabric_block() { [ -n "$(fabric_block "$@")" ]; }
no_fabric_ctrl() { [ -z "$(fabric_ctrl "$1")" ]; }

# The kernel initiator's host NQN: nvme-cli takes /etc/nvme/hostnqn when it exists.
ensure_hostnqn() {
	mkdir -p /etc/nvme
	[ -s /etc/nvme/hostnqn ] ||
		echo "nqn.2014-08.org.nvmexpress:uuid:5f3c1e2a-7b4d-4c8e-9a61-0d2b3c4e5f60" >/etc/nvme/hostnqn
	[ -s /etc/nvme/hostid ] || echo "5f3c1e2a-7b4d-4c8e-9a61-0d2b3c4e5f60" >/etc/nvme/hostid
}

# connect_tcp NQN PORT: `nvme connect` over NVMe/TCP on 127.0.0.1 and waits (bounded) for the
# namespace's block device; prints it as `VFNVME-FABRIC: NQN ctrl=nvmeN block=nvmeXnY`.
connect_tcp() {
	ensure_hostnqn
	run nvme connect -t tcp -a 127.0.0.1 -s "$2" -n "$1"
	wait_until 30 has_fabric_block "$1"
	echo "VFNVME-FABRIC: $1 ctrl=$(fabric_ctrl "$1") block=$(fabric_block "$1")"
}

# disconnect_tcp NQN: `nvme disconnect` and waits (bounded) until the controller is gone.
disconnect_tcp() {
	run nvme disconnect -n "$1"
	wait_until 30 no_fabric_ctrl "$1"
}

# nvmet_export NQN BLOCKDEV PORT: the kernel target (nvmet-tcp) exports /dev/BLOCKDEV as
# namespace 1 of subsystem NQN, open to any host, on 127.0.0.1:PORT (its own nvmet port).
nvmet_export() {
	grep -q " /sys/kernel/config configfs" /proc/mounts ||
		run mount -t configfs configfs /sys/kernel/config
	[ -d /sys/kernel/config/nvmet ] || fail "no /sys/kernel/config/nvmet: is nvmet loaded?"
	ne_subsys=/sys/kernel/config/nvmet/subsystems/$1
	run mkdir "$ne_subsys"
	echo 1 >"$ne_subsys/attr_allow_any_host"
	run mkdir "$ne_subsys/namespaces/1"
	printf '%s' "/dev/$2" >"$ne_subsys/namespaces/1/device_path"
	echo 1 >"$ne_subsys/namespaces/1/enable"
	ne_port=/sys/kernel/config/nvmet/ports/$3
	run mkdir "$ne_port"
	echo tcp >"$ne_port/addr_trtype"
	echo ipv4 >"$ne_port/addr_adrfam"
	echo 127.0.0.1 >"$ne_port/addr_traddr"
	echo "$3" >"$ne_port/addr_trsvcid"
	run ln -s "$ne_subsys" "$ne_port/subsystems/$1"
	echo "nvmet: /dev/$2 exported as $1 on 127.0.0.1:$3"
}

has_block_device() { [ -n "$(block_of "$1")" ] && [ -b "/dev/$(block_of "$1")" ]; }

# cmp_or_explain EXPECTED ACTUAL WHAT: cmp, showing the first differing bytes on failure.
cmp_or_explain() {
	if ! cmp "$1" "$2"; then
		echo "first differing bytes (offset, expected, actual; octal):"
		cmp -l "$1" "$2" 2>&1 | head -n 16
		fail "$3 differs from what was expected ($1)"
	fi
}

# serve_try NAME CONFIG: like serve_start, but a serve that exits early or prints no ready line
# within SERVE_READY_SECONDS does not fail the scenario: it is killed (SIGKILL), its log printed
# as capture NAME, and `serve_try_result` says `exited` or `hung` (otherwise `ready`).
serve_try() {
	SERVE_NAME=$1
	echo "+ vfnvme serve --config $2 &"
	RUST_LOG=${SERVE_RUST_LOG:-info} vfnvme serve --config "$2" \
		>"/tmp/capture/$1.out" 2>"/tmp/capture/$1.err" &
	SERVE_PID=$!
	sty_deadline=$(($(date +%s) + SERVE_READY_SECONDS))
	sty_result=ready
	until grep -q -e "$SERVE_READY_PATTERN" "/tmp/capture/$1.err"; do
		if ! alive "$SERVE_PID"; then
			sty_result=exited
			break
		fi
		if [ "$(date +%s)" -ge "$sty_deadline" ]; then
			sty_result=hung
			echo "vfnvme serve: no ready line within ${SERVE_READY_SECONDS} s; threads:"
			for sty_task in /proc/"$SERVE_PID"/task/*; do
				echo "  $(cat "$sty_task/comm") $(cut -d' ' -f3 "$sty_task/stat") $(cat "$sty_task/wchan")"
			done
			kill -KILL "$SERVE_PID"
			break
		fi
		sleep 0.1
	done
	echo "$sty_result" >/tmp/serve_try_result
	echo "VFNVME-SERVE-TRY: $1 $sty_result"
	if [ "$sty_result" != ready ]; then
		sty_rc=0
		wait "$SERVE_PID" || sty_rc=$?
		echo "$sty_rc" >"/tmp/capture/$1.rc"
		emit_capture "$1"
		SERVE_PID=""
		SERVE_NAME=""
	fi
}

serve_try_result() { cat /tmp/serve_try_result; }
