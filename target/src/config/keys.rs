//! The DH-HMAC-CHAP keys of a subsystem's hosts as the checked configuration holds them
//! ([`SubsystemAuth`]); a leaf so that `types` and the checks in `auth` both build on it.

use std::path::PathBuf;
use std::sync::Arc;

use vfnvme_auth::DhchapSecret;

/// Who of a subsystem's hosts authenticates, and with which keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubsystemAuth {
    /// Every host must authenticate (each allowed host has a key); otherwise only the hosts
    /// with a key do.
    pub required: bool,
    pub keys: Vec<HostKey>,
}

impl SubsystemAuth {
    /// The key of host `host_nqn`, if it has one.
    pub fn key_of(&self, host_nqn: &str) -> Option<&HostKey> {
        self.keys.iter().find(|key| key.host_nqn == host_nqn)
    }
}

/// A host's DH-HMAC-CHAP secret and, for bidirectional authentication, the controller's.
#[derive(Clone, Debug)]
pub struct HostKey {
    pub host_nqn: String,
    pub secret: Arc<DhchapSecret>,
    pub ctrl_secret: Option<Arc<DhchapSecret>>,
    /// The files they were read from, for `save_config` to name (never their content).
    pub secret_file: PathBuf,
    pub ctrl_secret_file: Option<PathBuf>,
}

impl PartialEq for HostKey {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &DhchapSecret, b: &DhchapSecret| a.representation() == b.representation();
        self.host_nqn == other.host_nqn
            && same(&self.secret, &other.secret)
            && match (&self.ctrl_secret, &other.ctrl_secret) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for HostKey {}
