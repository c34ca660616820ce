# Phase "hot-removal" of tests/teardown.rs (run by run_phase, under sh -e, with lib.sh):
# `vfnvme serve` (2 poll groups) exports drive 0 (root bus) and drive 1 (behind PCIe root port
# rp1); the kernel initiator runs fio with crc32c verification on both; QEMU removes drive 1
# (QMP device_del). vfnvme must give drive 1 back (the VFIO device request) so that it leaves
# the guest's PCI bus, keep serving drive 0 (fio's verify passes), fail drive 1's I/O, and
# still exit 0 on SIGTERM.

B0=$DRIVE0_BDF
B1=$DRIVE1_BDF
NQN0=nqn.2026-11.io.vfnvme:td0
NQN1=nqn.2026-11.io.vfnvme:td1
REMOVAL_LIMIT_S=60
CONNECT_OPTIONS="--ctrl-loss-tmo=5 --reconnect-delay=1"
FIO_VERIFY="--direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --verify=crc32c --verify_fatal=1 --output-format=json"

step "hot-removal: drive 1 is behind a root port, drive 0 on the root bus"
[ "${B1#0000:00:}" = "$B1" ] || fail "drive 1 is on the root bus ($B1), not behind a root port"
[ "${B0#0000:00:}" != "$B0" ] || fail "drive 0 is not on the root bus ($B0)"

step "hot-removal: clean up after an earlier phase that failed half-way"
if [ -s /tmp/teardown-serve.pid ] && alive "$(cat /tmp/teardown-serve.pid)"; then
	echo "killing a vfnvme serve left running (pid $(cat /tmp/teardown-serve.pid))"
	kill -KILL "$(cat /tmp/teardown-serve.pid)" || true
	wait_until 10 ended "$(cat /tmp/teardown-serve.pid)"
fi
touch /tmp/stop-writers
timeout 60 nvme disconnect-all || true

step "hot-removal: setup.sh config, both drives to vfio-pci"
run env HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci

step "hot-removal: vfnvme serve, cores = 2, both drives"
write_serve_config /tmp/hot-removal.toml 2 "$NQN0=$B0" "$NQN1=$B1"
serve_start td_serve_hot /tmp/hot-removal.toml
echo "$SERVE_PID" >/tmp/teardown-serve.pid

step "hot-removal: nvme connect to both ($CONNECT_OPTIONS)"
# shellcheck disable=SC2086
connect_tcp "$NQN0" 4420 $CONNECT_OPTIONS
# shellcheck disable=SC2086
connect_tcp "$NQN1" 4420 $CONNECT_OPTIONS
F0=$(fabric_block "$NQN0")
F1=$(fabric_block "$NQN1")

step "hot-removal: fio randwrite + crc32c verify on both (drive 1 loops until it fails), until each wrote 4 MiB"
mark_writes "$F0" "$F1"
# shellcheck disable=SC2086
# Eight passes, so that it still runs at the removal on a fast host too.
capture_silent td_fio0 fio $FIO_VERIFY --name=keep --filename="/dev/$F0" --size=16M --loops=8 &
FIO0=$!
# shellcheck disable=SC2086
capture_silent td_fio1 fio $FIO_VERIFY --name=removed --filename="/dev/$F1" --size=16M \
	--loops=1000 &
FIO1=$!
wait_until 60 writes_since 8192 "$F0" "$F1"
alive "$FIO0" || fail "fio on drive 0 ended before the removal: $(cat /tmp/capture/td_fio0.err)"
alive "$FIO1" || fail "fio on drive 1 ended before the removal: $(cat /tmp/capture/td_fio1.err)"

step "hot-removal: QMP device_del of drive 1 under load: it leaves the PCI bus within ${REMOVAL_LIMIT_S} s"
REMOVAL_STARTED=$(now_ms)
request_device_del 1
drive1_gone() { [ ! -e "/sys/bus/pci/devices/$B1" ]; }
wait_until "$REMOVAL_LIMIT_S" drive1_gone
REMOVAL_MS=$(($(now_ms) - REMOVAL_STARTED))
echo "VFNVME-TEARDOWN: removal_ms=$REMOVAL_MS"

step "hot-removal: vfnvme serve keeps running and a new nvme discover answers"
alive "$SERVE_PID" || fail "vfnvme serve (pid $SERVE_PID) is gone after the removal"
capture td_discover_after nvme discover -t tcp -a 127.0.0.1 -s 8009
expect_eq "$(capture_rc td_discover_after)" 0 "exit status of nvme discover after the removal"
expect_grep "$NQN0" /tmp/capture/td_discover_after.out "the discovery log after the removal"

step "hot-removal: fio on drive 0 completes with verify passing"
wait_exit 180 "$FIO0"
emit_capture td_fio0
expect_eq "$(capture_rc td_fio0)" 0 "exit status of fio (verify) on drive 0, the one kept"

step "hot-removal: fio on the removed drive 1 ends with I/O errors"
wait_exit 120 "$FIO1"
emit_capture td_fio1
[ "$(capture_rc td_fio1)" != 0 ] || fail "fio on the removed drive 1 exited 0"
echo "VFNVME-TEARDOWN: removed_drive_fio_exit=$(capture_rc td_fio1)"

step "hot-removal: drive 0 still serves new I/O over the fabric"
run dd if=/dev/urandom of=/tmp/after-removal bs=64k count=16
run dd if=/tmp/after-removal of="/dev/$F0" bs=64k seek=512 count=16 oflag=direct conv=notrunc
run dd if="/dev/$F0" of=/tmp/after-removal-read bs=64k skip=512 count=16 iflag=direct
cmp_or_explain /tmp/after-removal /tmp/after-removal-read "drive 0 read back after the removal"

step "hot-removal: serve's log shows the removal handled, and no panic"
expect_grep "removal requested" "/tmp/capture/td_serve_hot.err" "vfnvme serve's log"
expect_grep "drive .*: released" "/tmp/capture/td_serve_hot.err" "vfnvme serve's log"
expect_no_grep panicked "/tmp/capture/td_serve_hot.err" "vfnvme serve's log"

step "hot-removal: disconnect, SIGTERM vfnvme serve: exit 0"
run timeout 60 nvme disconnect -n "$NQN0"
run timeout 60 nvme disconnect -n "$NQN1"
wait_until 30 no_fabric_ctrl "$NQN0"
wait_until 30 no_fabric_ctrl "$NQN1"
serve_stop
expect_eq "$(capture_rc td_serve_hot)" 0 "exit status of vfnvme serve after the removal and SIGTERM"
expect_no_grep panicked /tmp/capture/td_serve_hot.err "vfnvme serve's log"
rm -f /tmp/teardown-serve.pid
expect_driver "$B0" vfio-pci
