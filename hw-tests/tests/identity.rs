//! What the Linux kernel host sees over NVMe/TCP of an emulated drive exported by `vfnvme
//! serve`, compared with what the kernel nvme driver saw of the same drive locally, in one
//! guest boot: the drive's own namespace identity (QEMU `nvme-ns` EUI-64 and UUID, in Identify
//! Namespace and the descriptor list, and the block device's sysfs `eui`, `uuid`, `wwid`) and
//! its optional commands (ONCS) and volatile write cache.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;
use vfnvme_hw_tests::{Drive, Outcome, Scenario};

const SERIAL: &str = "VFNVMEIDENT0";
const DRIVE_BYTES: u64 = 64 << 20;
const NQN: &str = "nqn.2026-11.io.vfnvme:ident0";
/// What the emulated drive reports: QEMU takes the EUI-64 as a number, nvme-cli prints it as
/// its 8 bytes in hex.
const EUI64: u64 = 0x0011_2233_4455_6677;
const EUI64_HEX: &str = "0011223344556677";
const UUID: &str = "6b1f2a3c-4d5e-4f60-8a71-92b3c4d5e6f7";
/// ONCS bits the target forwards (Dataset Management, Write Zeroes).
const FORWARDED_ONCS: u64 = (1 << 2) | (1 << 3);

const SCRIPT: &str = r#"
B0=$DRIVE0_BDF

step "the drive as the kernel nvme driver sees it locally"
L=$(block_of "$B0")
LC=$(basename "$(ls -d /sys/bus/pci/devices/$B0/nvme/nvme*)")
capture local_id_ctrl nvme id-ctrl "/dev/$LC" -o json
capture local_id_ns nvme id-ns "/dev/$L" -o json
capture local_ns_descs nvme ns-descs "/dev/$L" -o json

step "export it with vfnvme serve and connect over NVMe/TCP"
run env HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
write_serve_config /tmp/serve.toml 1 "NQN=$B0"
serve_start serve /tmp/serve.toml
connect_tcp NQN 4420
F=$(fabric_block NQN); FC=$(fabric_ctrl NQN)

step "the same drive as the kernel host sees it over the fabric"
capture fabric_id_ctrl nvme id-ctrl "/dev/$FC" -o json
capture fabric_id_ns nvme id-ns "/dev/$F" -o json
capture fabric_ns_descs nvme ns-descs "/dev/$F" -o json
capture fabric_sysfs sh -c "for f in eui uuid wwid; do printf '%s=' \$f; cat /sys/block/$F/\$f 2>/dev/null || echo; done"

step "disconnect and stop"
disconnect_tcp NQN
serve_stop
expect_eq "$(capture_rc serve)" 0 "exit status of vfnvme serve after SIGTERM"
"#;

fn boot() -> &'static Outcome {
    static BOOT: OnceLock<Result<Outcome, String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        let drive = Drive::new(SERIAL, DRIVE_BYTES)
            .namespace_property(&format!("eui64={EUI64:#x}"))
            .namespace_property(&format!("uuid={UUID}"));
        Scenario::new("identity", &SCRIPT.replace("NQN", NQN))
            .drive(drive)
            .memory_mib(2048)
            .needs_vfnvme()
            .run()
            .map_err(|error| format!("scenario identity: cannot run: {error}"))
    })
    .as_ref()
    .unwrap_or_else(|error| panic!("{error}"))
}

/// The descriptors of an `nvme ns-descs` capture, in a set: their order and place in the
/// list (`loc`) say nothing about the namespace.
fn descriptors(outcome: &Outcome, name: &str) -> BTreeSet<String> {
    let list = outcome.json(name);
    let entries = list["ns-descs"]
        .as_array()
        .unwrap_or_else(|| outcome.fail(&format!("{name}: no ns-descs in {list}")));
    entries
        .iter()
        .map(|entry| {
            let mut entry = entry.clone();
            if let Some(fields) = entry.as_object_mut() {
                fields.remove("loc");
            }
            entry.to_string()
        })
        .collect()
}

/// `eui=... uuid=... wwid=...` lines of a sysfs capture.
fn sysfs(outcome: &Outcome, name: &str) -> Vec<String> {
    let capture = outcome.expect_capture(name);
    capture.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn the_host_sees_the_drives_own_namespace_identity_over_the_fabric() {
    let outcome = boot();
    outcome.assert_passed();
    let local = outcome.json("local_id_ns");
    let fabric = outcome.json("fabric_id_ns");
    if local["eui64"] != EUI64_HEX {
        outcome.fail(&format!(
            "the emulated drive does not report EUI-64 {EUI64_HEX} locally: {local}"
        ));
    }
    for field in ["eui64", "nguid"] {
        if fabric[field] != local[field] {
            outcome.fail(&format!(
                "Identify Namespace {field}: {} over the fabric, {} locally",
                fabric[field], local[field]
            ));
        }
    }
    let (local_descs, fabric_descs) = (
        descriptors(outcome, "local_ns_descs"),
        descriptors(outcome, "fabric_ns_descs"),
    );
    if fabric_descs != local_descs {
        outcome.fail(&format!(
            "descriptor list over the fabric {fabric_descs:?}, locally {local_descs:?}"
        ));
    }
    // Locally the kernel ignores QEMU's identifiers (NVME_QUIRK_BOGUS_NID), so the block
    // device over the fabric is checked against the values the drive reports.
    let eui_bytes: Vec<String> = (0..8)
        .map(|byte| format!("{:02x}", (EUI64 >> (56 - 8 * byte)) & 0xff))
        .collect();
    let expected = vec![
        format!("eui={}", eui_bytes.join(" ")),
        format!("uuid={UUID}"),
        format!("wwid=uuid.{UUID}"),
    ];
    let fabric_sysfs = sysfs(outcome, "fabric_sysfs");
    if fabric_sysfs != expected {
        outcome.fail(&format!(
            "sysfs of the block device over the fabric {fabric_sysfs:?}, expected {expected:?}"
        ));
    }
}

#[test]
fn the_host_sees_the_drives_optional_commands_and_write_cache_over_the_fabric() {
    let outcome = boot();
    let local = outcome.json("local_id_ctrl");
    let fabric = outcome.json("fabric_id_ctrl");
    let field = |id: &Value, name: &str| {
        id[name]
            .as_u64()
            .unwrap_or_else(|| outcome.fail(&format!("id-ctrl has no {name}: {id}")))
    };
    let (local_oncs, fabric_oncs) = (field(&local, "oncs"), field(&fabric, "oncs"));
    if local_oncs & FORWARDED_ONCS != FORWARDED_ONCS {
        outcome.fail(&format!(
            "the emulated drive lacks Write Zeroes or Dataset Management: ONCS {local_oncs:#x}"
        ));
    }
    if fabric_oncs != local_oncs & FORWARDED_ONCS {
        outcome.fail(&format!(
            "ONCS over the fabric {fabric_oncs:#x}; the drive's {local_oncs:#x}, of which the \
             target forwards {FORWARDED_ONCS:#x}"
        ));
    }
    let (local_vwc, fabric_vwc) = (field(&local, "vwc") & 1, field(&fabric, "vwc") & 1);
    if fabric_vwc != local_vwc {
        outcome.fail(&format!(
            "volatile write cache: {fabric_vwc} over the fabric, {local_vwc} locally"
        ));
    }
}
