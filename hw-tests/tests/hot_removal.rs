//! Harness plumbing for surprise-removal tests: a drive behind a PCIe root port is removed
//! through QMP `device_del` at the guest's request while the kernel nvme driver owns it.

use vfnvme_hw_tests::{Drive, Scenario};

const SCRIPT: &str = r#"
B0=$DRIVE0_BDF; B1=$DRIVE1_BDF
step "drive 1 sits behind a root port"
[ "${B1#0000:00:}" = "$B1" ] || fail "drive 1 is on the root bus ($B1), not behind a root port"
expect_driver "$B1" nvme

step "hot-remove drive 1"
request_device_del 1
drive1_gone() { [ ! -e "/sys/bus/pci/devices/$B1" ]; }
wait_until 60 drive1_gone
expect_driver "$B0" nvme
"#;

#[test]
fn qmp_device_del_removes_a_drive_from_the_running_guest() {
    Scenario::new("hot-removal", SCRIPT)
        .drive(Drive::new("VFNVMEHOT0", 16 << 20))
        .drive(Drive::new("VFNVMEHOT1", 16 << 20).behind_root_port())
        .run_expecting_pass();
}
