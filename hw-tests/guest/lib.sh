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

# Whether process $1 has ended (for wait_until).
ended() { ! alive "$1"; }

# sectors_written DEV: 512-byte sectors written to block device DEV. For a multipath head
# (nvmeSnN) its paths' (nvmeScCnN) are counted too: the 6.1 kernel keeps no I/O statistics
# on the head itself.
sectors_written() {
	for sw_stat in "/sys/block/$1/stat" "/sys/block/${1%n*}"c*"n${1##*n}/stat"; do
		[ -e "$sw_stat" ] && cat "$sw_stat"
	done | awk '{ sectors += $7 } END { print sectors + 0 }'
}

# mark_writes DEV...: remembers how much each block device DEV has written, for writes_since.
mark_writes() {
	for mw_dev in "$@"; do
		sectors_written "$mw_dev" >"/tmp/written-$mw_dev"
	done
}

# writes_since SECTORS DEV...: whether each DEV wrote SECTORS more since mark_writes (for
# wait_until: load is reaching the devices, not merely started).
writes_since() {
	ws_sectors=$1
	shift
	for ws_dev in "$@"; do
		[ "$(sectors_written "$ws_dev")" -ge $(($(cat "/tmp/written-$ws_dev") + ws_sectors)) ] ||
			return 1
	done
}

# Milliseconds since boot (from /proc/uptime, 10 ms resolution).
now_ms() {
	nm_uptime=$(cut -d' ' -f1 /proc/uptime)
	echo $((${nm_uptime%.*} * 1000 + $(echo "${nm_uptime#*.}" | sed 's/^0*//;s/^$/0/') * 10))
}

# wait_exit SECONDS PID...: waits (bounded) until every PID (children of this shell) has
# exited and reaps them; on time-out, kills the ones left (SIGKILL) and fails naming them.
wait_exit() {
	we_deadline=$(($(date +%s) + $1))
	shift
	for we_pid in "$@"; do
		while alive "$we_pid"; do
			if [ "$(date +%s)" -ge "$we_deadline" ]; then
				we_left=""
				for we_other in "$@"; do
					if alive "$we_other"; then
						we_left="$we_left $we_other ($(tr '\0' ' ' <"/proc/$we_other/cmdline"))"
						kill -KILL "$we_other" 2>/dev/null || true
					fi
				done
				fail "still running after the time allowed (killed):$we_left"
			fi
			sleep 0.1
		done
		wait "$we_pid" || true
	done
}

hugepages_total() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages; }
hugepages_free() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages; }

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

# var NAME: the value of the variable named NAME (e.g. `var "F$d"` for F0, F1, ...).
var() { eval "printf '%s' \"\${$1}\""; }

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
# (or, for NQN=ram:MIB, a RAM namespace of MIB MiB in 4 KiB blocks) as its own subsystem NQN
# (namespace 1), open to any host, on 127.0.0.1:4420, plus the discovery listener
# 127.0.0.1:8009. SERVE_TARGET_EXTRA, if set, is added to [target] (e.g.
# "shutdown_deadline_ms = 5000").
write_serve_config() {
	wsc_file=$1
	wsc_cores=$2
	shift 2
	{
		printf '[target]\ncores = %s\n' "$wsc_cores"
		[ -z "${SERVE_TARGET_EXTRA:-}" ] || printf '%s\n' "$SERVE_TARGET_EXTRA"
		printf '\n'
		printf '[[listener]]\naddress = "127.0.0.1:4420"\n\n'
		printf '[[listener]]\naddress = "127.0.0.1:8009"\n'
		for wsc_export in "$@"; do
			printf '\n[[subsystem]]\nnqn = "%s"\nallow_any_host = true\n' "${wsc_export%%=*}"
			case "${wsc_export#*=}" in
			ram:*) printf '\n[[subsystem.namespace]]\nnsid = 1\nram_mib = %s\nblock_size = 4096\n' "${wsc_export#*=ram:}" ;;
			*) printf '\n[[subsystem.namespace]]\nnsid = 1\npci = "%s"\n' "${wsc_export#*=}" ;;
			esac
		done
	} >"$wsc_file"
	echo "--- $wsc_file ---"
	cat "$wsc_file"
}

# serve_start NAME CONFIG: starts `vfnvme serve --config CONFIG` in the background (stdout and
# stderr in /tmp/capture/NAME.{out,err}, RUST_LOG=info unless SERVE_RUST_LOG says otherwise)
# and waits, bounded, for its ready line. Sets SERVE_PID and SERVE_NAME; `serve_stop` ends it.
serve_start() {
	serve_try "$1" "$2"
	case "$(serve_try_result)" in
	exited) fail "vfnvme serve exited with status $(capture_rc "$1") before its ready line" ;;
	hung) fail "vfnvme serve printed no ready line ('$SERVE_READY_PATTERN') within ${SERVE_READY_SECONDS} s" ;;
	esac
	echo "vfnvme serve (pid $SERVE_PID) is ready: $(grep -e "$SERVE_READY_PATTERN" "/tmp/capture/$1.err" | head -n 1)"
}

# serve_stop: SIGTERM to the serve started by serve_start, waits (bounded; SIGKILL and a
# failure after SERVE_STOP_SECONDS), and prints its exit status and log as capture SERVE_NAME.
# Does not fail on a non-zero exit: check `capture_rc $SERVE_NAME`. The milliseconds from
# SIGTERM to its exit are in /tmp/capture/SERVE_NAME.ms.
serve_stop() {
	echo "+ kill -TERM $SERVE_PID   # vfnvme serve"
	sst_started=$(now_ms)
	kill -TERM "$SERVE_PID" || fail "vfnvme serve (pid $SERVE_PID) is gone before SIGTERM"
	sst_deadline=$(($(date +%s) + SERVE_STOP_SECONDS))
	while alive "$SERVE_PID"; do
		if [ "$(date +%s)" -ge "$sst_deadline" ]; then
			kill -KILL "$SERVE_PID"
			fail "vfnvme serve did not exit within ${SERVE_STOP_SECONDS} s of SIGTERM (killed)"
		fi
		sleep 0.1
	done
	sst_ms=$(($(now_ms) - sst_started))
	sst_rc=0
	wait "$SERVE_PID" || sst_rc=$?
	echo "$sst_rc" >"/tmp/capture/$SERVE_NAME.rc"
	echo "$sst_ms" >"/tmp/capture/$SERVE_NAME.ms"
	emit_capture "$SERVE_NAME"
	echo "vfnvme serve exited with status $sst_rc ($sst_ms ms after SIGTERM)"
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
no_fabric_block() { [ -z "$(fabric_block "$@")" ]; }
no_fabric_ctrl() { [ -z "$(fabric_ctrl "$1")" ]; }

# The kernel initiator's host NQN: nvme-cli takes /etc/nvme/hostnqn when it exists.
ensure_hostnqn() {
	mkdir -p /etc/nvme
	[ -s /etc/nvme/hostnqn ] ||
		echo "nqn.2014-08.org.nvmexpress:uuid:5f3c1e2a-7b4d-4c8e-9a61-0d2b3c4e5f60" >/etc/nvme/hostnqn
	[ -s /etc/nvme/hostid ] || echo "5f3c1e2a-7b4d-4c8e-9a61-0d2b3c4e5f60" >/etc/nvme/hostid
}

# connect_tcp NQN PORT [OPTION...]: `nvme connect` over NVMe/TCP on 127.0.0.1 (with the
# extra nvme-connect options, e.g. --ctrl-loss-tmo=5) and waits (bounded) for the namespace's
# block device; prints it as `VFNVME-FABRIC: NQN ctrl=nvmeN block=nvmeXnY`.
connect_tcp() {
	ensure_hostnqn
	ct_nqn=$1
	ct_port=$2
	shift 2
	run nvme connect -t tcp -a 127.0.0.1 -s "$ct_port" -n "$ct_nqn" "$@"
	wait_until 30 has_fabric_block "$ct_nqn"
	echo "VFNVME-FABRIC: $ct_nqn ctrl=$(fabric_ctrl "$ct_nqn") block=$(fabric_block "$ct_nqn")"
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

# --- Acknowledged-write tracking ------------------------------------------------------------

# pattern_writer DEV EXPECTED FIRST COUNT CHUNK_KIB LOG: writes chunks FIRST, FIRST+1, ...,
# FIRST+COUNT-1 of file EXPECTED to the same offsets of DEV in this order, one O_DIRECT dd per
# chunk, and appends each chunk's index to LOG once dd reports it written (the device
# acknowledged it). Every chunk is written once, so a lost acknowledged write cannot hide
# behind an earlier copy of the same data. Stops at the first failed write (LOG.end says
# `failed CHUNK: why`), once /tmp/stop-writers exists (`stopped`) or after the last chunk
# (`done`). Meant to run in the background: `pattern_writer ... &`.
pattern_writer() {
	pw_chunk=$3
	: >"$6"
	while [ "$pw_chunk" -lt $(($3 + $4)) ]; do
		if [ -e /tmp/stop-writers ]; then
			echo stopped >"$6.end"
			return 0
		fi
		if ! dd if="$2" of="$1" bs="$5k" skip="$pw_chunk" seek="$pw_chunk" count=1 \
			oflag=direct conv=notrunc 2>"$6.dd"; then
			echo "failed $pw_chunk: $(tr '\n' ' ' <"$6.dd")" >"$6.end"
			return 0
		fi
		echo "$pw_chunk" >>"$6"
		pw_chunk=$((pw_chunk + 1))
	done
	echo done >"$6.end"
}

# acked_count LOG: how many writes pattern_writer saw acknowledged.
acked_count() {
	if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi
}

# verify_acked DEV EXPECTED FIRST COUNT CHUNK_KIB LOG: checks that LOG is the chunk sequence
# pattern_writer FIRST COUNT writes, that every chunk it names reads back from DEV (O_DIRECT)
# equal to EXPECTED, and that the chunk after the one the writer was writing when it stopped
# (never written) reads as zeros, so the comparison can tell written from unwritten. Prints
# `VFNVME-ACKED: LOG N acknowledged and verified`.
verify_acked() {
	va_n=$(acked_count "$6")
	va_bad=$(awk -v first="$3" '$1 != first + NR - 1 { print NR ": " $1; exit }' "$6")
	[ -z "$va_bad" ] || fail "$6 is not the writer's sequence from chunk $3 at line $va_bad"
	[ "$va_n" -le "$4" ] || fail "$6 names $va_n chunks, the writer has $4"
	if [ "$va_n" -gt 0 ]; then
		run dd if="$1" of=/tmp/verify-actual bs="$5k" skip="$3" count="$va_n" iflag=direct
		run dd if="$2" of=/tmp/verify-expected bs="$5k" skip="$3" count="$va_n"
		cmp_or_explain /tmp/verify-expected /tmp/verify-actual \
			"chunks $3..$(($3 + va_n - 1)) of $1 (acknowledged per $6)"
		rm -f /tmp/verify-actual /tmp/verify-expected
	fi
	if [ $((va_n + 1)) -lt "$4" ]; then
		va_unwritten=$(($3 + va_n + 1))
		run dd if="$1" of=/tmp/verify-actual bs="$5k" skip="$va_unwritten" count=1 iflag=direct
		run dd if=/dev/zero of=/tmp/verify-expected bs="$5k" count=1
		cmp_or_explain /tmp/verify-expected /tmp/verify-actual \
			"chunk $va_unwritten of $1 (never written by the writer of $6)"
		rm -f /tmp/verify-actual /tmp/verify-expected
	fi
	echo "VFNVME-ACKED: $6 $va_n acknowledged and verified"
}

# --- Phases: independent parts of one boot --------------------------------------------------

# run_phase NAME SCRIPT: runs SCRIPT in its own `sh -e` with these helpers and env.sh (export
# what else it needs), so that a failing phase does not keep the next one from running.
# Prints `VFNVME-PHASE-BEGIN NAME` and `VFNVME-PHASE-RESULT: NAME PASS` (or `FAIL step=...
# exit=...`); never fails itself: `phases_passed` says whether every phase passed.
run_phase() {
	echo "VFNVME-PHASE-BEGIN $1"
	step "$1: start"
	rp_rc=0
	sh -e -c '. /harness/lib.sh; . /harness/env.sh; . "$0"' "$2" || rp_rc=$?
	if [ "$rp_rc" = 0 ]; then
		echo "VFNVME-PHASE-RESULT: $1 PASS"
	else
		echo "VFNVME-PHASE-RESULT: $1 FAIL step=$(cat /tmp/vfnvme-step) exit=$rp_rc"
		echo "$1" >>/tmp/vfnvme-phases-failed
	fi
}

phases_passed() {
	[ ! -s /tmp/vfnvme-phases-failed ] ||
		fail "phases failed: $(tr '\n' ' ' </tmp/vfnvme-phases-failed)"
}
