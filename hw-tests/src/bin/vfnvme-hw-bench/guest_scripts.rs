//! The guest shell snippets of `vfnvme-hw-bench`: setting up and tearing down each
//! comparison's targets (guest/lib.sh's helpers; `NQN_*`, `SERVE_CORES` and `HUGEMEM_MIB` are
//! replaced by `script`).

pub const SETUP: &str = r#"
KERNEL_BDF=$DRIVE0_BDF; VFIO_BDF=$DRIVE1_BDF
# What a time read costs here (a vDSO TSC read, or a system call and an emulated timer).
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
step 'setup.sh config (drive 0 stays on the kernel nvme driver)'
run env PCI_BLOCKED="$KERNEL_BDF" HUGEMEM=HUGEMEM_MIB setup.sh config
expect_driver "$KERNEL_BDF" nvme
expect_driver "$VFIO_BDF" vfio-pci
BLOCK=$(block_of "$KERNEL_BDF")
[ -b "/dev/$BLOCK" ] || fail "no block device for $KERNEL_BDF"
"#;

pub const FABRIC_SETUP: &str = r#"
step 'nvmet-tcp exports drive 0 (127.0.0.1:4421); vfnvme serve exports drive 1 (127.0.0.1:4420)'
nvmet_export NQN_NVMET "$BLOCK" 4421
write_serve_config /tmp/bench-serve.toml SERVE_CORES "NQN_VFNVME=$VFIO_BDF"
SERVE_RUST_LOG=warn serve_start bench_serve /tmp/bench-serve.toml
connect_tcp NQN_NVMET 4421
connect_tcp NQN_VFNVME 4420
FABRIC_NVMET=$(fabric_block NQN_NVMET)
FABRIC_VFNVME=$(fabric_block NQN_VFNVME)
run nvme list
"#;

pub const FABRIC_TEARDOWN: &str = r#"
step 'disconnect; SIGTERM vfnvme serve'
disconnect_tcp NQN_NVMET
disconnect_tcp NQN_VFNVME
serve_stop
expect_eq "$(capture_rc bench_serve)" 0 "exit status of vfnvme serve after SIGTERM"
"#;

/// SPDK's environment loads OpenSSL's configuration file and fails without one; the guest has
/// none, and an empty one is OpenSSL's defaults. DPDK keeps its runtime files in /var/run/dpdk,
/// SPDK's trace its shared memory in /dev/shm.
pub const SPDK_ENV: &str = r#"
mkdir -p /var/run /dev/shm
grep -q ' /dev/shm ' /proc/mounts || mount -t tmpfs tmpfs /dev/shm
: >/tmp/openssl.cnf
export OPENSSL_CONF=/tmp/openssl.cnf
"#;

/// null_blk (loaded at boot, no memory behind it: a read completes in the block layer) and a
/// RAM namespace: what is left is the fabric path, fio and the kernel initiator.
pub const FLOOR_SETUP: &str = r#"
step 'nvmet-tcp exports null_blk (127.0.0.1:4423); vfnvme serve exports a RAM namespace (127.0.0.1:4420)'
[ -b /dev/nullb0 ] || fail "no /dev/nullb0: is null_blk loaded?"
nvmet_export NQN_NVMET_NULL nullb0 4423
write_serve_config /tmp/bench-serve-ram.toml SERVE_CORES "NQN_VFNVME_RAM=ram:64"
SERVE_RUST_LOG=warn serve_start bench_serve_ram /tmp/bench-serve-ram.toml
connect_tcp NQN_NVMET_NULL 4423
connect_tcp NQN_VFNVME_RAM 4420
FLOOR_NVMET=$(fabric_block NQN_NVMET_NULL)
FLOOR_VFNVME=$(fabric_block NQN_VFNVME_RAM)
"#;

pub const FLOOR_TEARDOWN: &str = r#"
step 'disconnect; SIGTERM vfnvme serve (RAM)'
disconnect_tcp NQN_NVMET_NULL
disconnect_tcp NQN_VFNVME_RAM
serve_stop
expect_eq "$(capture_rc bench_serve_ram)" 0 "exit status of vfnvme serve after SIGTERM"
"#;

/// nvmf_tgt from a JSON config (no rpc.py in the guest): drive 1 through SPDK's own PCIe
/// driver as bdev Nvme0n1, namespace 1 of NQN_SPDK on 127.0.0.1:4422. Its listener in
/// /proc/net/tcp (port 4422 = 0x1146, state 0A) says it is ready.
pub const SPDK_FABRIC_SETUP: &str = r#"
step 'configs: nvmf_tgt and vfnvme serve export drive 1, one at a time'
printf '%s\n' '{"subsystems": [' \
  '{"subsystem": "bdev", "config": [{"method": "bdev_nvme_attach_controller",' \
  "  \"params\": {\"name\": \"Nvme0\", \"trtype\": \"PCIe\", \"traddr\": \"$VFIO_BDF\"}}]}," \
  '{"subsystem": "nvmf", "config": [' \
  '  {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},' \
  '  {"method": "nvmf_create_subsystem", "params": {"nqn": "NQN_SPDK",' \
  '    "allow_any_host": true, "serial_number": "SPDKBENCH"}},' \
  '  {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "NQN_SPDK",' \
  '    "namespace": {"nsid": 1, "bdev_name": "Nvme0n1"}}},' \
  '  {"method": "nvmf_subsystem_add_listener", "params": {"nqn": "NQN_SPDK",' \
  '    "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1",' \
  '    "trsvcid": "4422"}}}]}]}' >/tmp/spdk-tgt.json
cat /tmp/spdk-tgt.json
write_serve_config /tmp/bench-serve.toml SERVE_CORES "NQN_VFNVME=$VFIO_BDF"
spdk_listening() {
	alive "$SPDK_TGT_PID" || fail "nvmf_tgt exited: $(tail -n 30 "/tmp/capture/$SPDK_TGT_NAME.err")"
	grep -q ':1146 00000000:0000 0A' /proc/net/tcp
}
spdk_tgt_start() {
	SPDK_TGT_NAME=$1
	echo "+ nvmf_tgt -m 0x1 --json /tmp/spdk-tgt.json &"
	nvmf_tgt -m 0x1 --json /tmp/spdk-tgt.json >"/tmp/capture/$1.out" 2>"/tmp/capture/$1.err" &
	SPDK_TGT_PID=$!
	wait_until 120 spdk_listening
}
spdk_tgt_stop() {
	kill -TERM "$SPDK_TGT_PID"
	wait_exit 60 "$SPDK_TGT_PID"
}
"#;
