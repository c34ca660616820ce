#!/usr/bin/env bash
# Installs the Debian packages the hardware-in-the-loop tests and the demo need on the host
# (QEMU, busybox for the guest, fio and nvme-cli copied into the guest), and refreshes apt's
# lists when the guest kernel is not cached yet (the harness asks apt-cache which package holds
# it). Does nothing when everything is there. Needs root, as apt does.
set -euo pipefail

required_packages=(qemu-system-x86 busybox-static fio nvme-cli cpio xz-utils)

is_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_updated=0
apt_update_once() {
	if [ "$apt_updated" = 0 ]; then
		apt-get update
		apt_updated=1
	fi
}

missing_packages=()
for package in "${required_packages[@]}"; do
	is_installed "$package" || missing_packages+=("$package")
done
if [ "${#missing_packages[@]}" -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-host-deps: missing ${missing_packages[*]}; run as root or apt-get install them" >&2
		exit 1
	fi
	echo "install-host-deps: installing ${missing_packages[*]}"
	apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_packages[@]}"
fi

hw_cache=${VFNVME_HW_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/vfnvme-hw}}
hw_cache=${hw_cache:-/var/cache/vfnvme-hw}
if ! compgen -G "$hw_cache/kernel/*/.complete" >/dev/null && [ "$(id -u)" = 0 ]; then
	apt_update_once
fi
