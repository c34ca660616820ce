//! The params of each method, as SPDK's `rpc.py` sends them: the fields vfnvme uses, and those
//! SPDK's client sends that vfnvme has no use for, accepted at the value that means "not
//! asked for" and refused, with the reason, otherwise. Unknown fields are refused by name.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::protocol::{params, RpcError};

/// A method's params: read, then checked for what vfnvme does not do.
pub trait Params: DeserializeOwned {
    /// An error for a field set to something vfnvme does not support.
    fn unsupported(&self) -> Option<RpcError> {
        None
    }
}

/// `T` from `value`, or the error naming what is wrong.
pub fn parse<T: Params>(value: Value) -> Result<T, RpcError> {
    let parsed: T = params(value)?;
    match parsed.unsupported() {
        Some(error) => Err(error),
        None => Ok(parsed),
    }
}

/// `field` is set, which vfnvme does not support: the error saying so and why.
fn refuse(set: bool, field: &str, why: &str) -> Option<RpcError> {
    set.then(|| RpcError::invalid_params(format!("params.{field}: {why}")))
}

/// SPDK's `tgt_name`: vfnvme runs one target, which has no name.
fn one_target(tgt_name: &Option<String>) -> Option<RpcError> {
    refuse(
        tgt_name.is_some(),
        "tgt_name",
        "vfnvme runs one target per process; leave it out",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetMethods {
    /// Methods callable in the current state: all of them, always.
    #[serde(default, rename = "current")]
    _current: bool,
    /// vfnvme has no deprecated aliases.
    #[serde(default, rename = "include_aliases")]
    _include_aliases: bool,
}

impl Params for GetMethods {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveConfig {
    /// Also write the configuration to this file (replaced whole, never half written).
    pub file: Option<std::path::PathBuf>,
}

impl Params for SaveConfig {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nqn {
    pub nqn: String,
    pub tgt_name: Option<String>,
}

impl Params for Nqn {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetSubsystems {
    /// Only this subsystem.
    pub nqn: Option<String>,
    pub tgt_name: Option<String>,
}

impl Params for GetSubsystems {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubsystem {
    pub nqn: String,
    pub serial_number: Option<String>,
    pub model_number: Option<String>,
    #[serde(default)]
    pub allow_any_host: bool,
    pub tgt_name: Option<String>,
    /// Accepted; a subsystem takes namespace IDs up to 0xfffffffe.
    #[serde(rename = "max_namespaces")]
    _max_namespaces: Option<u32>,
    #[serde(default)]
    pub ana_reporting: bool,
    #[serde(default)]
    pub passthrough: bool,
    #[serde(default)]
    pub enable_nssr: bool,
    pub min_cntlid: Option<u16>,
    pub max_cntlid: Option<u16>,
    pub dmrsl: Option<u32>,
    pub wzsl: Option<u32>,
    pub admin_label: Option<String>,
}

impl Params for CreateSubsystem {
    fn unsupported(&self) -> Option<RpcError> {
        let cntlids = "the controller IDs are the target's ([target] cntlid_min, cntlid_max)";
        one_target(&self.tgt_name)
            .or_else(|| refuse(self.ana_reporting, "ana_reporting", "ANA is not supported"))
            .or_else(|| {
                refuse(
                    self.passthrough,
                    "passthrough",
                    "namespaces are always passed through to their drive",
                )
            })
            .or_else(|| refuse(self.enable_nssr, "enable_nssr", "NSSR is not supported"))
            .or_else(|| refuse(self.min_cntlid.is_some(), "min_cntlid", cntlids))
            .or_else(|| refuse(self.max_cntlid.is_some(), "max_cntlid", cntlids))
            .or_else(|| {
                refuse(
                    self.dmrsl.is_some(),
                    "dmrsl",
                    "the drives' own limits apply",
                )
            })
            .or_else(|| refuse(self.wzsl.is_some(), "wzsl", "the drives' own limits apply"))
            .or_else(|| {
                refuse(
                    self.admin_label.is_some(),
                    "admin_label",
                    "extended discovery log entries are not supported",
                )
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddHost {
    pub nqn: String,
    pub host: String,
    pub tgt_name: Option<String>,
    pub psk: Option<String>,
    pub dhchap_key: Option<String>,
    pub dhchap_ctrlr_key: Option<String>,
}

impl Params for AddHost {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name)
    }
}

/// `nvmf_subsystem_set_keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetKeys {
    pub nqn: String,
    pub host: String,
    pub tgt_name: Option<String>,
    pub dhchap_key: Option<String>,
    pub dhchap_ctrlr_key: Option<String>,
}

impl Params for SetKeys {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name)
    }
}

/// `keyring_file_add_key`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringAddKey {
    pub name: String,
    pub path: std::path::PathBuf,
}

impl Params for KeyringAddKey {}

/// `keyring_file_remove_key`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringRemoveKey {
    pub name: String,
}

impl Params for KeyringRemoveKey {}

/// `keyring_get_keys`: no params.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetKeys {}

impl Params for GetKeys {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveHost {
    pub nqn: String,
    pub host: String,
    pub tgt_name: Option<String>,
    /// How long to wait for the host's controllers to go; by default `shutdown_deadline_ms`.
    pub timeout_ms: Option<u64>,
}

impl Params for RemoveHost {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowAnyHost {
    pub nqn: String,
    pub allow_any_host: bool,
    pub tgt_name: Option<String>,
}

impl Params for AllowAnyHost {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name)
    }
}

/// A listener as SPDK's `listen_address` param names one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenAddress {
    pub trtype: Option<String>,
    pub adrfam: Option<String>,
    pub traddr: String,
    pub trsvcid: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsystemListener {
    pub nqn: String,
    pub listen_address: ListenAddress,
    pub tgt_name: Option<String>,
    #[serde(default)]
    pub secure_channel: bool,
    pub ana_state: Option<String>,
}

impl Params for SubsystemListener {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name).or_else(|| {
            refuse(
                self.ana_state.is_some(),
                "ana_state",
                "ANA is not supported",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_spdk_sends_unasked_is_accepted_and_what_it_asks_for_refused() {
        // As `rpc.py nvmf_create_subsystem NQN -s SN -a` sends it.
        let sent = json!({"nqn": "nqn.x", "serial_number": "SN", "allow_any_host": true,
            "ana_reporting": false, "passthrough": false, "enable_nssr": false});
        let create: CreateSubsystem = parse(sent).unwrap();
        assert!(create.allow_any_host);
        let ana = parse::<CreateSubsystem>(json!({"nqn": "nqn.x", "ana_reporting": true}));
        assert_eq!(
            ana.err().unwrap().message,
            "params.ana_reporting: ANA is not supported"
        );
        let named = parse::<Nqn>(json!({"nqn": "nqn.x", "tgt_name": "t"}));
        assert!(named
            .err()
            .unwrap()
            .message
            .starts_with("params.tgt_name: "));
        let keyed: AddHost = parse(json!({"nqn": "nqn.x", "host": "h", "psk": "k"})).unwrap();
        assert_eq!(keyed.psk.as_deref(), Some("k"));
        let _: GetMethods = parse(json!({"current": false, "include_aliases": false})).unwrap();
    }
}

/// `nvmf_get_stats`, `vfnvme_get_stats`: no params.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetStats {
    /// SPDK's target name: vfnvme runs one target per process.
    #[serde(default)]
    tgt_name: Option<String>,
}

impl Params for GetStats {
    fn unsupported(&self) -> Option<RpcError> {
        refuse(
            self.tgt_name.is_some(),
            "tgt_name",
            "vfnvme runs one target per process; leave it out",
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNamespace {
    pub nqn: String,
    pub namespace: NamespaceParams,
    pub tgt_name: Option<String>,
}

/// SPDK's `namespace` object, with the keys of a `[[subsystem.namespace]]` for what backs it
/// (SPDK's `bdev_name` names a drive's namespace as `nvmf_get_subsystems` prints it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceParams {
    /// The lowest free NSID when absent.
    pub nsid: Option<u64>,
    pub bdev_name: Option<String>,
    pub pci: Option<String>,
    pub device_nsid: Option<u64>,
    pub ram_mib: Option<u64>,
    pub sim_mib: Option<u64>,
    pub sim_latency_us: Option<u64>,
    pub sim_metadata_bytes: Option<u64>,
    pub sim_log_page_latency_ms: Option<u64>,
    pub block_size: Option<u64>,
    pub uuid: Option<String>,
    pub nguid: Option<String>,
    pub eui64: Option<String>,
    pub ptpl_file: Option<String>,
    pub anagrpid: Option<u32>,
    #[serde(default)]
    pub no_auto_visible: bool,
    #[serde(default)]
    pub hide_metadata: bool,
}

impl Params for AddNamespace {
    fn unsupported(&self) -> Option<RpcError> {
        let namespace = &self.namespace;
        let ids = "a namespace's identifiers are its drive's (a RAM or simulated namespace \
                   draws an NGUID at each start)";
        one_target(&self.tgt_name)
            .or_else(|| refuse(namespace.uuid.is_some(), "namespace.uuid", ids))
            .or_else(|| refuse(namespace.nguid.is_some(), "namespace.nguid", ids))
            .or_else(|| refuse(namespace.eui64.is_some(), "namespace.eui64", ids))
            .or_else(|| {
                refuse(
                    namespace.ptpl_file.is_some(),
                    "namespace.ptpl_file",
                    "reservations are not supported",
                )
            })
            .or_else(|| {
                refuse(
                    namespace.anagrpid.is_some(),
                    "namespace.anagrpid",
                    "ANA is not supported",
                )
            })
            .or_else(|| {
                refuse(
                    namespace.no_auto_visible,
                    "namespace.no_auto_visible",
                    "a namespace is visible to every host of its subsystem",
                )
            })
            .or_else(|| {
                refuse(
                    namespace.hide_metadata,
                    "namespace.hide_metadata",
                    "namespaces with metadata are not exported",
                )
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveNamespace {
    pub nqn: String,
    pub nsid: u64,
    pub tgt_name: Option<String>,
}

impl Params for RemoveNamespace {
    fn unsupported(&self) -> Option<RpcError> {
        one_target(&self.tgt_name)
    }
}
