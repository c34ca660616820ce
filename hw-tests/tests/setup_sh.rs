//! `tools/setup.sh` in a guest with three emulated NVMe drives: config with PCI_BLOCKED and
//! a mounted drive, idempotence, status, reset, hugepage bookkeeping, usage errors.

use vfnvme_hw_tests::{Drive, Scenario};

const SCRIPT: &str = r#"
B0=$DRIVE0_BDF; B1=$DRIVE1_BDF; B2=$DRIVE2_BDF
has_block_device() { [ -n "$(block_of "$1")" ] && [ -b "/dev/$(block_of "$1")" ]; }

step "usage"
capture help setup.sh -h
expect_eq "$(capture_rc help)" 0 "exit code of setup.sh -h"
expect_grep "Usage: setup.sh" /tmp/capture/help.out
capture bogus setup.sh bogus
expect_eq "$(capture_rc bogus)" 2 "exit code of setup.sh bogus"

step "status before config"
capture status_before setup.sh status
expect_eq "$(capture_rc status_before)" 0 "exit code of setup.sh status"
expect_grep "^$B0 *1b36:0010 *nvme .*nvme[0-9]*n1" /tmp/capture/status_before.out

step "mount a filesystem on drive 1"
BLOCK1=$(block_of "$B1")
run mke2fs -q "/dev/$BLOCK1"
run mkdir -p /mnt/drive1
run mount -t ext2 "/dev/$BLOCK1" /mnt/drive1
# Hugepages someone else reserved: setup.sh must leave them alone on reset.
echo 4 >/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

step "config with drive 2 blocked and drive 1 mounted"
capture config_first env PCI_BLOCKED="$B2" HUGEMEM=64 setup.sh config
expect_eq "$(capture_rc config_first)" 0 "exit code of the first config"
expect_driver "$B0" vfio-pci
expect_driver "$B1" nvme
expect_driver "$B2" nvme
expect_grep "$B1: skipped, in use: /dev/$BLOCK1 is mounted on /mnt/drive1" /tmp/capture/config_first.out
expect_grep "$B2: skipped (PCI_ALLOWED/PCI_BLOCKED)" /tmp/capture/config_first.out
expect_grep "memlock limit" /tmp/capture/config_first.out
expect_eq "$(hugepages_total)" 32 "hugepages after config (HUGEMEM=64)"
expect_grep "hugetlbfs" /proc/mounts
group0=$(basename "$(readlink "/sys/bus/pci/devices/$B0/iommu_group")")
[ -c "/dev/vfio/$group0" ] || fail "/dev/vfio/$group0 missing for $B0"
[ -d /sys/module/vfio_iommu_type1 ] || fail "vfio_iommu_type1 not loaded"

step "config after unmounting drive 1"
run umount /mnt/drive1
capture config_second env PCI_BLOCKED="$B2" HUGEMEM=64 setup.sh config
expect_eq "$(capture_rc config_second)" 0 "exit code of the second config"
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci
expect_driver "$B2" nvme
expect_no_grep "nothing to do" /tmp/capture/config_second.out

step "status shows the bindings"
capture status_bound setup.sh status
expect_grep "^$B0 *1b36:0010 *vfio-pci *[0-9][0-9]* *vfio$" /tmp/capture/status_bound.out
expect_grep "^$B1 *1b36:0010 *vfio-pci *[0-9][0-9]* *vfio$" /tmp/capture/status_bound.out
expect_grep "^$B2 *1b36:0010 *nvme *[0-9][0-9]* *nvme[0-9]*n1$" /tmp/capture/status_bound.out
expect_grep "reserved 32, free 32, added by setup.sh 28" /tmp/capture/status_bound.out

step "config again changes nothing"
capture config_again env PCI_BLOCKED="$B2" HUGEMEM=64 setup.sh config
expect_eq "$(capture_rc config_again)" 0 "exit code of the repeated config"
expect_grep "nothing to do" /tmp/capture/config_again.out
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci
expect_driver "$B2" nvme
expect_eq "$(hugepages_total)" 32 "hugepages after the repeated config"

step "reset"
capture reset setup.sh reset
expect_eq "$(capture_rc reset)" 0 "exit code of reset"
expect_driver "$B0" nvme
expect_driver "$B1" nvme
expect_driver "$B2" nvme
wait_until 30 has_block_device "$B0"
wait_until 30 has_block_device "$B1"
expect_eq "$(hugepages_total)" 4 "hugepages after reset (the 4 reserved before config stay)"

step "reset again changes nothing"
capture reset_again setup.sh reset
expect_eq "$(capture_rc reset_again)" 0 "exit code of the repeated reset"
expect_grep "nothing to do" /tmp/capture/reset_again.out

step "PCI_ALLOWED picks one drive"
capture config_allowed env PCI_ALLOWED="$B1" HUGEMEM=8 setup.sh config
expect_eq "$(capture_rc config_allowed)" 0 "exit code of config with PCI_ALLOWED"
expect_driver "$B0" nvme
expect_driver "$B1" vfio-pci
expect_driver "$B2" nvme
run setup.sh reset
expect_driver "$B1" nvme
"#;

#[test]
fn setup_sh_binds_skips_and_resets_drives() {
    let outcome = Scenario::new("setup-sh", SCRIPT)
        .drive(Drive::new("VFNVMESETUP0", 64 << 20))
        .drive(Drive::new("VFNVMESETUP1", 128 << 20))
        .drive(Drive::new("VFNVMESETUP2", 96 << 20))
        .run_expecting_pass();
    eprintln!("setup-sh scenario passed in {:?}", outcome.elapsed);
}
