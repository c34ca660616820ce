# Phase "sigterm" of tests/teardown.rs (run by run_phase, under sh -e, with lib.sh):
# SIGTERM to `vfnvme serve` (2 poll groups, 2 drives) while the kernel initiator writes to both
# drives, then every write the writers saw acknowledged must read back through the kernel nvme
# driver, and serve must start and accept connections again at once.
#
# Load per drive: two pattern_writer loops (one O_DIRECT dd of a CHUNK_KIB chunk at a time,
# each acknowledged chunk logged) over the drive's first 32 MiB, and fio randwrite at QD16 over
# its last 32 MiB, so that many commands are in flight when the signal comes.

B0=$DRIVE0_BDF
B1=$DRIVE1_BDF
NQN0=nqn.2026-11.io.vfnvme:td0
NQN1=nqn.2026-11.io.vfnvme:td1
CHUNK_KIB=32
WRITER_CHUNKS=512 # 16 MiB per writer, two writers per drive: the first 32 MiB
DEADLINE_MS=5000
# SIGTERM to exit: the drain deadline plus what closing sockets, deleting queues, shutting the
# controllers down and unmapping takes under TCG.
EXIT_LIMIT_MS=$((DEADLINE_MS + 5000))
# The host gives up on a lost controller after 5 s instead of 600 s.
CONNECT_OPTIONS="--ctrl-loss-tmo=5 --reconnect-delay=1"

step "sigterm: setup.sh config, both drives to vfio-pci"
run env HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci

step "sigterm: the data the writers write: vfnvme pattern, seed 11 (drive 0), 12 (drive 1)"
for d in 0 1; do
	run sh -c "vfnvme pattern --block-size 512 --blocks 65536 --seed 1$d >/tmp/expected$d"
done

step "sigterm: vfnvme serve, cores = 2, shutdown_deadline_ms = $DEADLINE_MS"
SERVE_TARGET_EXTRA="shutdown_deadline_ms = $DEADLINE_MS" \
	write_serve_config /tmp/teardown.toml 2 "$NQN0=$B0" "$NQN1=$B1"
HUGEPAGES_FREE_BEFORE=$(hugepages_free)
serve_start td_serve /tmp/teardown.toml
# shellcheck disable=SC2153 # set by serve_start
echo "$SERVE_PID" >/tmp/teardown-serve.pid
SERVE_PID1=$SERVE_PID

step "sigterm: nvme connect to both ($CONNECT_OPTIONS)"
# shellcheck disable=SC2086
connect_tcp "$NQN0" 4420 $CONNECT_OPTIONS
# shellcheck disable=SC2086
connect_tcp "$NQN1" 4420 $CONNECT_OPTIONS
F0=$(fabric_block "$NQN0")
F1=$(fabric_block "$NQN1")

step "sigterm: start 4 pattern writers and fio randwrite QD16 on both fabric devices"
rm -f /tmp/stop-writers
WRITERS=""
for d in 0 1; do
	dev=/dev/$(var "F$d")
	for w in 0 1; do
		pattern_writer "$dev" "/tmp/expected$d" $((w * WRITER_CHUNKS)) "$WRITER_CHUNKS" \
			"$CHUNK_KIB" "/tmp/acked-$d-$w" &
		WRITERS="$WRITERS $!"
	done
done
capture_silent td_load fio --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
	--time_based --runtime=300 \
	--name=load0 --filename="/dev/$F0" --offset=32M --size=32M \
	--name=load1 --filename="/dev/$F1" --offset=32M --size=32M &
LOAD=$!

step "sigterm: every writer gets 32 writes acknowledged (60 s at most), then 4 MiB more on each device"
acked_min() {
	am_min=""
	for am_log in /tmp/acked-0-0 /tmp/acked-0-1 /tmp/acked-1-0 /tmp/acked-1-1; do
		am_n=$(acked_count "$am_log")
		[ -n "$am_min" ] && [ "$am_min" -le "$am_n" ] || am_min=$am_n
	done
	echo "$am_min"
}
writers_going() { [ "$(acked_min)" -ge 32 ]; }
wait_until 60 writers_going
mark_writes "$F0" "$F1"
wait_until 60 writes_since 8192 "$F0" "$F1"
for pid in $WRITERS $LOAD; do
	alive "$pid" || fail "a writer or fio (pid $pid) ended before SIGTERM: $(cat /tmp/acked-*.end /tmp/capture/td_load.err 2>/dev/null)"
done
ACKED_BEFORE=$(cat /tmp/acked-* | wc -l)
echo "VFNVME-TEARDOWN: acked_before_sigterm=$ACKED_BEFORE"

step "sigterm: SIGTERM vfnvme serve with writes in flight: exit 0 within ${EXIT_LIMIT_MS} ms"
SERVE_STOP_SECONDS=$((EXIT_LIMIT_MS / 1000 + 20)) serve_stop
EXIT_MS=$(cat /tmp/capture/td_serve.ms)
echo "VFNVME-TEARDOWN: sigterm_exit_status=$(capture_rc td_serve) sigterm_exit_ms=$EXIT_MS"
expect_eq "$(capture_rc td_serve)" 0 "exit status of vfnvme serve after SIGTERM under load"
[ "$EXIT_MS" -le "$EXIT_LIMIT_MS" ] ||
	fail "vfnvme serve took $EXIT_MS ms from SIGTERM to exit (limit $EXIT_LIMIT_MS ms)"
expect_no_grep panicked /tmp/capture/td_serve.err "vfnvme serve's log"
expect_eq "$(hugepages_free)" "$HUGEPAGES_FREE_BEFORE" \
	"free hugepages after vfnvme serve exited (every DMA region released)"

step "sigterm: the host lets go (nvme disconnect); writers and fio end"
touch /tmp/stop-writers
run timeout 60 nvme disconnect -n "$NQN0"
run timeout 60 nvme disconnect -n "$NQN1"
wait_until 30 no_fabric_ctrl "$NQN0"
wait_until 30 no_fabric_ctrl "$NQN1"
# shellcheck disable=SC2086
wait_exit 60 $WRITERS $LOAD
ACKED_AFTER=$(cat /tmp/acked-* | wc -l)
for log in /tmp/acked-*-?; do
	echo "writer $log: $(acked_count "$log") acknowledged, ended: $(cat "$log.end")"
done
echo "VFNVME-TEARDOWN: acked_total=$ACKED_AFTER acked_after_sigterm=$((ACKED_AFTER - ACKED_BEFORE))"

step "sigterm: setup.sh reset: the drives go back to the kernel nvme driver"
run setup.sh reset
expect_driver "$B0" nvme
expect_driver "$B1" nvme
wait_until 30 has_block_device "$B0"
wait_until 30 has_block_device "$B1"

step "sigterm: every acknowledged write reads back through the kernel nvme driver"
for d in 0 1; do
	bdf=$(var "B$d")
	for w in 0 1; do
		verify_acked "/dev/$(block_of "$bdf")" "/tmp/expected$d" $((w * WRITER_CHUNKS)) \
			"$WRITER_CHUNKS" "$CHUNK_KIB" "/tmp/acked-$d-$w"
	done
done
echo "VFNVME-TEARDOWN: acknowledged writes verified"

step "sigterm: setup.sh config and vfnvme serve again"
run env HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci
serve_start td_serve_again /tmp/teardown.toml
echo "$SERVE_PID" >/tmp/teardown-serve.pid
[ "$SERVE_PID" != "$SERVE_PID1" ] || fail "the restarted serve has the old pid"

step "sigterm: nvme connect again at once, and a short read of acknowledged data"
CONNECT_STARTED=$(now_ms)
# shellcheck disable=SC2086
connect_tcp "$NQN0" 4420 $CONNECT_OPTIONS
# shellcheck disable=SC2086
connect_tcp "$NQN1" 4420 $CONNECT_OPTIONS
echo "VFNVME-TEARDOWN: reconnect_ms=$(($(now_ms) - CONNECT_STARTED))"
for d in 0 1; do
	nqn=$(var "NQN$d")
	run dd if="/dev/$(fabric_block "$nqn")" of=/tmp/short-read bs="${CHUNK_KIB}k" count=1 iflag=direct
	run dd if="/tmp/expected$d" of=/tmp/short-expected bs="${CHUNK_KIB}k" count=1
	cmp_or_explain /tmp/short-expected /tmp/short-read "chunk 0 of drive $d read over the fabric"
done
echo "VFNVME-TEARDOWN: reconnect and short read ok"

step "sigterm: disconnect, SIGTERM the restarted serve: exit 0"
disconnect_tcp "$NQN0"
disconnect_tcp "$NQN1"
serve_stop
expect_eq "$(capture_rc td_serve_again)" 0 "exit status of the restarted vfnvme serve"
rm -f /tmp/teardown-serve.pid
