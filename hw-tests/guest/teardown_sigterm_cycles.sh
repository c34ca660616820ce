# Phase "sigterm-cycles" of tests/teardown.rs (run by run_phase, under sh -e, with lib.sh):
# CYCLES times: vfnvme serve (2 poll groups, 2 drives), the kernel initiator connected to both,
# fio randwrite QD32 on both, SIGTERM after a second: serve exits 0 within the limit every
# time. Prints, per cycle, how many I/O errors the host logged with a status the target should
# not use while draining (anything but Namespace Not Ready), for tests/teardown.rs to judge.

B0=$DRIVE0_BDF
B1=$DRIVE1_BDF
NQN0=nqn.2026-11.io.vfnvme:td0
NQN1=nqn.2026-11.io.vfnvme:td1
CYCLES=${TEARDOWN_CYCLES:-6}
DEADLINE_MS=5000
EXIT_LIMIT_MS=$((DEADLINE_MS + 5000))
CONNECT_OPTIONS="--ctrl-loss-tmo=5 --reconnect-delay=1"

# Kernel log lines of I/O the target failed with a generic status other than 0x82.
unexpected_statuses() {
	dmesg | grep "I/O Error (sct 0x0 / sc 0x" | grep -vc "sc 0x82)" || true
}

step "sigterm-cycles: clean up after an earlier phase that failed half-way"
if [ -s /tmp/teardown-serve.pid ] && alive "$(cat /tmp/teardown-serve.pid)"; then
	kill -KILL "$(cat /tmp/teardown-serve.pid)" || true
	wait_until 10 ended "$(cat /tmp/teardown-serve.pid)"
fi
timeout 60 nvme disconnect-all || true
run env HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci
SERVE_TARGET_EXTRA="shutdown_deadline_ms = $DEADLINE_MS" \
	write_serve_config /tmp/cycles.toml 2 "$NQN0=$B0" "$NQN1=$B1"

cycle=1
while [ "$cycle" -le "$CYCLES" ]; do
	step "sigterm-cycles: cycle $cycle of $CYCLES: serve, connect, fio QD32 on both, SIGTERM"
	before=$(unexpected_statuses)
	serve_start "td_cycle$cycle" /tmp/cycles.toml
	echo "$SERVE_PID" >/tmp/teardown-serve.pid
	# shellcheck disable=SC2086
	connect_tcp "$NQN0" 4420 $CONNECT_OPTIONS
	# shellcheck disable=SC2086
	connect_tcp "$NQN1" 4420 $CONNECT_OPTIONS
	C0=$(fabric_block "$NQN0")
	C1=$(fabric_block "$NQN1")
	mark_writes "$C0" "$C1"
	capture_silent "td_cycle_fio$cycle" fio --direct=1 --ioengine=libaio --rw=randwrite \
		--bs=4k --iodepth=32 --time_based --runtime=60 \
		--name=load0 --filename="/dev/$C0" --name=load1 --filename="/dev/$C1" &
	fio_pid=$!
	# SIGTERM with writes flowing to both: 1 MiB each reached the devices.
	wait_until 60 writes_since 2048 "$C0" "$C1"
	alive "$fio_pid" || fail "fio ended before SIGTERM: $(cat "/tmp/capture/td_cycle_fio$cycle.err")"
	SERVE_STOP_SECONDS=$((EXIT_LIMIT_MS / 1000 + 20)) serve_stop
	exit_ms=$(cat "/tmp/capture/td_cycle$cycle.ms")
	expect_eq "$(capture_rc "td_cycle$cycle")" 0 "exit status of vfnvme serve (cycle $cycle)"
	[ "$exit_ms" -le "$EXIT_LIMIT_MS" ] ||
		fail "cycle $cycle: $exit_ms ms from SIGTERM to exit (limit $EXIT_LIMIT_MS ms)"
	expect_no_grep panicked "/tmp/capture/td_cycle$cycle.err" "vfnvme serve's log"
	run timeout 60 nvme disconnect -n "$NQN0"
	run timeout 60 nvme disconnect -n "$NQN1"
	wait_until 30 no_fabric_ctrl "$NQN0"
	wait_until 30 no_fabric_ctrl "$NQN1"
	wait_exit 60 "$fio_pid"
	echo "VFNVME-CYCLE: $cycle exit_ms=$exit_ms unexpected_statuses=$(($(unexpected_statuses) - before))"
	cycle=$((cycle + 1))
done
rm -f /tmp/teardown-serve.pid
