#!/bin/sh
# vfnvme setup: take NVMe drives away from the kernel (bind them to vfio-pci) and
# reserve hugepages for DMA, in the spirit of SPDK's scripts/setup.sh.
#
# POSIX sh on purpose: it runs under bash, dash and busybox sh (the hw-tests guest).
# Function-local variables carry a per-function prefix instead of `local`, which POSIX lacks.

set -u

NVME_CLASS=0x010802
PCI_DEVICES=/sys/bus/pci/devices
HUGEPAGE_KB=2048
HUGEPAGE_SYSFS=/sys/kernel/mm/hugepages/hugepages-${HUGEPAGE_KB}kB
HUGEPAGE_STATE=${HUGEPAGE_STATE:-/run/vfnvme-setup.hugepages}
HUGEMEM=${HUGEMEM:-2048}
PCI_ALLOWED=${PCI_ALLOWED:-}
PCI_BLOCKED=${PCI_BLOCKED:-}

# Set to 1 by every action that changes the system, so a second `config` can say it did nothing.
CHANGED=0
# Set to 1 by any failure that should make the exit code 1 once all drives were tried.
FAILED=0

usage() {
	cat <<EOF
Usage: setup.sh [config|status|reset|help]

  config   (default) load vfio modules, bind NVMe drives to vfio-pci,
           reserve hugepages and mount hugetlbfs at /dev/hugepages
  status   show NVMe drives (address, vendor:device, driver, IOMMU group,
           block device) and hugepages
  reset    give drives back to the kernel nvme driver and release the
           hugepages that config reserved
  help     show this text (also -h, --help)

Environment:
  PCI_ALLOWED  space-separated PCI addresses (0000:00:04.0) to use; default: all NVMe drives
  PCI_BLOCKED  space-separated PCI addresses to leave alone
  HUGEMEM      MiB of 2 MiB hugepages to reserve (default 2048); config only raises the count
  HUGEPAGE_STATE  file remembering how many pages config added (default /run/vfnvme-setup.hugepages)

Drives that are mounted, hold a mounted partition, are used as swap or are held by
md/dm are skipped, with the reason. Exit codes: 0 ok, 1 error, 2 usage.
EOF
}

info() { echo "setup.sh: $*"; }
warn() { echo "setup.sh: WARNING: $*" >&2; }
error() { echo "setup.sh: ERROR: $*" >&2; FAILED=1; }

# ---- PCI helpers ---------------------------------------------------------------------------

nvme_drives() {
	for nd_dev in "$PCI_DEVICES"/*; do
		[ -r "$nd_dev/class" ] || continue
		[ "$(cat "$nd_dev/class")" = "$NVME_CLASS" ] && basename "$nd_dev"
	done
	return 0
}

word_in_list() {
	for wil_item in $2; do
		[ "$wil_item" = "$1" ] && return 0
	done
	return 1
}

# Whether PCI_ALLOWED / PCI_BLOCKED let us touch this drive.
is_selected() {
	if [ -n "$PCI_ALLOWED" ] && ! word_in_list "$1" "$PCI_ALLOWED"; then
		return 1
	fi
	! word_in_list "$1" "$PCI_BLOCKED"
}

driver_of() {
	if [ -e "$PCI_DEVICES/$1/driver" ]; then
		basename "$(readlink "$PCI_DEVICES/$1/driver")"
	else
		echo none
	fi
}

iommu_group_of() {
	if [ -e "$PCI_DEVICES/$1/iommu_group" ]; then
		basename "$(readlink "$PCI_DEVICES/$1/iommu_group")"
	else
		echo none
	fi
}

# Block devices (namespaces) the kernel nvme driver created for this drive, e.g. nvme0n1.
# Hidden multipath paths (nvme0c0n1) are reported through their head device when it exists.
block_devices_of() {
	for bd_ns in "$PCI_DEVICES/$1"/nvme/nvme*/nvme*n*; do
		[ -e "$bd_ns" ] || continue
		bd_name=$(basename "$bd_ns")
		if [ -e "/sys/block/$bd_name" ]; then
			echo "$bd_name"
		else
			bd_head=$(echo "$bd_name" | sed -n 's/^nvme\([0-9]*\)c[0-9]*n\([0-9]*\)$/nvme\1n\2/p')
			[ -n "$bd_head" ] && [ -e "/sys/block/$bd_head" ] && echo "$bd_head"
		fi
	done
	return 0
}

# Prints why the drive must not be taken from the kernel, or nothing when it is free.
in_use_reason() {
	for iu_block in $(block_devices_of "$1"); do
		for iu_sys in "/sys/block/$iu_block" "/sys/block/$iu_block/$iu_block"*; do
			[ -e "$iu_sys/dev" ] || continue
			iu_name=$(basename "$iu_sys")
			iu_majmin=$(cat "$iu_sys/dev")
			iu_mountpoint=$(awk -v mm="$iu_majmin" '$3 == mm { print $5; exit }' /proc/self/mountinfo)
			if [ -n "$iu_mountpoint" ]; then
				echo "/dev/$iu_name is mounted on $iu_mountpoint"
				return 0
			fi
			if [ -r /proc/swaps ] && grep -q "^/dev/$iu_name " /proc/swaps; then
				echo "/dev/$iu_name is used as swap"
				return 0
			fi
			iu_holders=""
			for iu_holder in "$iu_sys"/holders/*; do
				[ -e "$iu_holder" ] && iu_holders="$iu_holders $(basename "$iu_holder")"
			done
			if [ -n "$iu_holders" ]; then
				echo "/dev/$iu_name is held by${iu_holders} (md/dm)"
				return 0
			fi
		done
	done
	return 0
}

warn_shared_iommu_group() {
	[ -d "$PCI_DEVICES/$1/iommu_group/devices" ] || return 0
	ws_others=""
	for ws_member in "$PCI_DEVICES/$1"/iommu_group/devices/*; do
		ws_bdf=$(basename "$ws_member")
		[ "$ws_bdf" = "$1" ] || ws_others="$ws_others $ws_bdf"
	done
	if [ -n "$ws_others" ]; then
		warn "$1 shares IOMMU group $(iommu_group_of "$1") with$ws_others;" \
			"vfio can only use the group when all of them are unbound or bound to vfio-pci"
	fi
}

load_module() {
	# /sys/module uses underscores whatever the module file is called.
	lm_sysname=$(echo "$1" | tr - _)
	[ -d "/sys/module/$lm_sysname" ] && return 0
	if ! modprobe "$1"; then
		error "cannot load kernel module $1: install the kernel modules package for $(uname -r)"
		return 1
	fi
	CHANGED=1
	info "loaded kernel module $1"
}

# Unbinds the drive from its driver and lets the PCI core probe it again with driver_override.
# $1 = BDF, $2 = driver to end up on, $3 = value for driver_override ("" clears it).
rebind() {
	rb_dev="$PCI_DEVICES/$1"
	# An empty write ("\n") clears driver_override.
	echo "$3" >"$rb_dev/driver_override" || return 1
	if [ -e "$rb_dev/driver" ]; then
		echo "$1" >"$rb_dev/driver/unbind" || return 1
	fi
	echo "$1" >/sys/bus/pci/drivers_probe 2>/dev/null
	[ "$(driver_of "$1")" = "$2" ]
}

# ---- hugepages ------------------------------------------------------------------------------

hugepages_total() {
	if [ -r "$HUGEPAGE_SYSFS/nr_hugepages" ]; then
		cat "$HUGEPAGE_SYSFS/nr_hugepages"
	else
		cat /proc/sys/vm/nr_hugepages
	fi
}

hugepages_free() {
	if [ -r "$HUGEPAGE_SYSFS/free_hugepages" ]; then
		cat "$HUGEPAGE_SYSFS/free_hugepages"
	else
		awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo
	fi
}

set_hugepages_total() {
	if [ -w "$HUGEPAGE_SYSFS/nr_hugepages" ]; then
		echo "$1" >"$HUGEPAGE_SYSFS/nr_hugepages"
	else
		echo "$1" >/proc/sys/vm/nr_hugepages
	fi
}

hugepages_added_by_us() {
	if [ -r "$HUGEPAGE_STATE" ]; then
		cat "$HUGEPAGE_STATE"
	else
		echo 0
	fi
}

reserve_hugepages() {
	case "$HUGEMEM" in
	'' | *[!0-9]*)
		error "HUGEMEM must be a number of MiB, not '$HUGEMEM'"
		return 1
		;;
	esac
	rh_wanted=$((HUGEMEM * 1024 / HUGEPAGE_KB))
	rh_before=$(hugepages_total)
	if [ "$rh_before" -ge "$rh_wanted" ]; then
		info "hugepages: $rh_before x ${HUGEPAGE_KB} kB already reserved (HUGEMEM=$HUGEMEM MiB needs $rh_wanted)"
	else
		if ! set_hugepages_total "$rh_wanted"; then
			error "cannot write the hugepage count: run as root"
			return 1
		fi
		rh_after=$(hugepages_total)
		rh_added=$((rh_after - rh_before))
		if [ "$rh_added" -gt 0 ]; then
			CHANGED=1
			mkdir -p "$(dirname "$HUGEPAGE_STATE")"
			echo $(($(hugepages_added_by_us) + rh_added)) >"$HUGEPAGE_STATE"
		fi
		if [ "$rh_after" -lt "$rh_wanted" ]; then
			error "hugepages: only $rh_after of $rh_wanted x ${HUGEPAGE_KB} kB could be reserved" \
				"(memory too fragmented or too small): lower HUGEMEM or reserve them at boot (hugepages=$rh_wanted)"
		else
			info "hugepages: reserved $rh_after x ${HUGEPAGE_KB} kB (added $rh_added)"
		fi
	fi
	if ! awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
		mkdir -p /dev/hugepages
		if mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages; then
			CHANGED=1
			info "mounted hugetlbfs at /dev/hugepages"
		else
			error "cannot mount hugetlbfs at /dev/hugepages"
		fi
	fi
}

release_hugepages() {
	rl_added=$(hugepages_added_by_us)
	if [ "$rl_added" -le 0 ]; then
		info "hugepages: none reserved by setup.sh, leaving $(hugepages_total) as they are"
		return 0
	fi
	rl_total=$(hugepages_total)
	rl_target=$((rl_total - rl_added))
	[ "$rl_target" -ge 0 ] || rl_target=0
	if ! set_hugepages_total "$rl_target"; then
		error "cannot write the hugepage count: run as root"
		return 1
	fi
	rm -f "$HUGEPAGE_STATE"
	CHANGED=1
	info "hugepages: released $((rl_total - $(hugepages_total))) (now $(hugepages_total));" \
		"pages still in use are freed when their owner exits"
}

check_memlock() {
	# `ulimit -l` is not POSIX, but bash, dash and busybox sh all have it; skip the check
	# in a shell that lacks it.
	# shellcheck disable=SC3045
	cm_limit=$(ulimit -l 2>/dev/null) || return 0
	case "$cm_limit" in
	unlimited | '' | *[!0-9]*) return 0 ;;
	esac
	cm_needed_kb=$((HUGEMEM * 1024))
	[ "$cm_limit" -ge "$cm_needed_kb" ] && return 0
	if [ "$(id -u)" = 0 ]; then
		# VFIO's type1 backend does not count pinned pages against root's limit (CAP_IPC_LOCK).
		info "memlock limit is $cm_limit KiB: fine for root (CAP_IPC_LOCK); to run vfnvme as" \
			"another user set 'ulimit -l unlimited' (systemd: LimitMEMLOCK=infinity)"
	else
		warn "memlock limit is $cm_limit KiB but vfio pins up to $cm_needed_kb KiB of DMA memory;" \
			"run vfnvme as root (CAP_IPC_LOCK), or set 'ulimit -l unlimited'" \
			"(systemd: LimitMEMLOCK=infinity; /etc/security/limits.conf: '<user> - memlock unlimited')"
	fi
}

require_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "setup.sh: ERROR: $1 needs root (it writes to /sys and /proc/sys)" >&2
		exit 1
	fi
}

# ---- commands -------------------------------------------------------------------------------

cmd_config() {
	require_root config
	if [ -z "$(ls /sys/kernel/iommu_groups 2>/dev/null)" ]; then
		warn "no IOMMU is enabled (/sys/kernel/iommu_groups is empty): enable VT-d/AMD-Vi in" \
			"the firmware and boot with intel_iommu=on (or amd_iommu=on) iommu=pt; vfio-pci cannot be used without it"
	fi
	# vfio-pci does not pull in the type1 IOMMU backend, and without it /dev/vfio/vfio can
	# not attach a group, so it is loaded explicitly (and first).
	load_module vfio_iommu_type1 || exit 1
	load_module vfio-pci || exit 1

	cc_found=0
	for cc_bdf in $(nvme_drives); do
		cc_found=1
		if ! is_selected "$cc_bdf"; then
			info "$cc_bdf: skipped (PCI_ALLOWED/PCI_BLOCKED), stays on $(driver_of "$cc_bdf")"
			continue
		fi
		cc_driver=$(driver_of "$cc_bdf")
		if [ "$cc_driver" = vfio-pci ]; then
			info "$cc_bdf: already on vfio-pci"
			warn_shared_iommu_group "$cc_bdf"
			continue
		fi
		cc_reason=$(in_use_reason "$cc_bdf")
		if [ -n "$cc_reason" ]; then
			info "$cc_bdf: skipped, in use: $cc_reason; unmount it / stop md/dm first"
			continue
		fi
		warn_shared_iommu_group "$cc_bdf"
		if rebind "$cc_bdf" vfio-pci vfio-pci; then
			CHANGED=1
			info "$cc_bdf: $cc_driver -> vfio-pci (IOMMU group $(iommu_group_of "$cc_bdf"))"
		else
			error "$cc_bdf: could not bind to vfio-pci (now on $(driver_of "$cc_bdf")); see dmesg"
		fi
	done
	[ "$cc_found" = 1 ] || info "no NVMe drives (PCI class $NVME_CLASS) found"

	reserve_hugepages
	check_memlock
	if [ "$CHANGED" = 0 ] && [ "$FAILED" = 0 ]; then
		info "nothing to do: already configured"
	fi
}

cmd_reset() {
	require_root reset
	if [ ! -d /sys/bus/pci/drivers/nvme ]; then
		load_module nvme || exit 1
	fi
	for cr_bdf in $(nvme_drives); do
		is_selected "$cr_bdf" || continue
		cr_driver=$(driver_of "$cr_bdf")
		cr_override=$(cat "$PCI_DEVICES/$cr_bdf/driver_override" 2>/dev/null)
		if [ "$cr_driver" = nvme ] && [ "$cr_override" = "(null)" ]; then
			continue
		fi
		if [ "$cr_driver" != vfio-pci ] && [ "$cr_driver" != none ] && [ "$cr_driver" != nvme ]; then
			info "$cr_bdf: on $cr_driver, not ours, left alone"
			continue
		fi
		if rebind "$cr_bdf" nvme ""; then
			CHANGED=1
			info "$cr_bdf: $cr_driver -> nvme"
		else
			error "$cr_bdf: could not bind to nvme (now on $(driver_of "$cr_bdf")): is a vfnvme process still using it?"
		fi
	done
	release_hugepages
	if [ "$CHANGED" = 0 ] && [ "$FAILED" = 0 ]; then
		info "nothing to do: already reset"
	fi
}

cmd_status() {
	printf '%-14s %-14s %-10s %-6s %s\n' BDF VENDOR:DEVICE DRIVER IOMMU BLOCK
	for cs_bdf in $(nvme_drives); do
		cs_dev="$PCI_DEVICES/$cs_bdf"
		cs_ids="$(sed 's/^0x//' "$cs_dev/vendor"):$(sed 's/^0x//' "$cs_dev/device")"
		cs_driver=$(driver_of "$cs_bdf")
		case "$cs_driver" in
		vfio-pci) cs_block=vfio ;;
		*)
			cs_block=$(block_devices_of "$cs_bdf" | tr '\n' ,)
			cs_block=${cs_block%,}
			;;
		esac
		printf '%-14s %-14s %-10s %-6s %s\n' "$cs_bdf" "$cs_ids" "$cs_driver" \
			"$(iommu_group_of "$cs_bdf")" "${cs_block:--}"
	done
	echo "hugepages (${HUGEPAGE_KB} kB): reserved $(hugepages_total), free $(hugepages_free)," \
		"added by setup.sh $(hugepages_added_by_us)"
}

case "${1:-config}" in
config) cmd_config ;;
status) cmd_status ;;
reset) cmd_reset ;;
help | -h | --help) usage; exit 0 ;;
*)
	usage >&2
	exit 2
	;;
esac

[ "$FAILED" = 0 ] || exit 1
exit 0
