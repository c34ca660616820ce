#!/bin/sh
# PID 1 of the hw-tests guest: mount the pseudo filesystems, load the kernel modules, wait for
# the NVMe drives, run the scenario, print its result marker for the host, power off.
# The host's harness reads the console; the marker line is its only source of truth.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
# The console is a terminal to env_logger; its colour codes would only clutter the host's logs.
export RUST_LOG_STYLE=never
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /tmp/capture
# NVMe/TCP scenarios connect to 127.0.0.1, which needs the loopback interface up.
ip link set lo up

report() {
	echo "VFNVME-SCENARIO-RESULT: $*"
	poweroff -f
	# poweroff only returns if it failed; exiting PID 1 panics, and panic=-1 with QEMU's
	# -no-reboot ends the VM as well.
	exit 1
}

echo "VFNVME-GUEST: kernel $(uname -r), $(nproc) cpus"
echo "boot" >/tmp/vfnvme-step
while read -r module; do
	insmod "/lib/modules/vfnvme/$module" || report "FAIL step=insmod $module"
done </harness/modules.order

# The nvme driver resets controllers and scans namespaces asynchronously after insmod; the
# scenario expects every drive's namespaces to be there when it starts.
settle_deadline=$(($(date +%s) + 60))
for dev in /sys/bus/pci/devices/*; do
	[ "$(cat "$dev/class")" = 0x010802 ] || continue
	until ls "$dev"/nvme/nvme*/nvme*n* >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$settle_deadline" ] ||
			report "FAIL step=boot: $(basename "$dev") has no namespaces after 60 s"
		sleep 0.1
	done
done

[ -f /harness/scenario.sh ] || report "FAIL step=boot: the initramfs has no scenario"
echo "VFNVME-GUEST: running scenario"
sh -e -c '. /harness/lib.sh; . /harness/env.sh; resolve_drives; . /harness/scenario.sh'
status=$?
if [ "$status" = 0 ]; then
	report "PASS"
else
	report "FAIL step=$(cat /tmp/vfnvme-step) exit=$status"
fi
