//! The configuration as serde reads it from TOML: every value a check may complain about keeps
//! its byte span, and [`Source`] turns spans into the `file:line` of an error. Its own file so
//! that the shape of the file format stands apart from the rules about its values.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::types::ConfigError;

/// The text of a configuration and the file it came from, for `file:line` errors.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

impl Source<'_> {
    /// The raw structures of the text; syntax errors, unknown keys and wrong types name their
    /// line.
    pub fn read(&self) -> Result<RawConfig, ConfigError> {
        toml::from_str(self.text).map_err(|e| ConfigError::Invalid {
            file: self.file.to_owned(),
            line: e.span().map_or(1, |span| self.line_of(&span)),
            reason: self.syntax_error_reason(&e),
        })
    }

    /// One `[[subsystem.namespace]]` table's keys (a namespace the management socket adds),
    /// with the errors of [`Self::read`].
    pub fn read_namespace(&self) -> Result<RawNamespace, ConfigError> {
        toml::from_str(self.text).map_err(|e| ConfigError::Invalid {
            file: self.file.to_owned(),
            line: e.span().map_or(1, |span| self.line_of(&span)),
            reason: self.syntax_error_reason(&e),
        })
    }

    /// toml's message or, where it has none (a control character in a comment), the character
    /// it stopped at.
    fn syntax_error_reason(&self, error: &toml::de::Error) -> String {
        let message = error.message().trim_end();
        if !message.is_empty() {
            return message.to_owned();
        }
        let found = error
            .span()
            .and_then(|span| self.text.get(span.start..))
            .and_then(|rest| rest.chars().next());
        match found {
            Some(character) => format!("character {character:?} is not allowed here"),
            None => "not valid TOML".to_owned(),
        }
    }

    pub fn line_of(&self, span: &Range<usize>) -> usize {
        let start = span.start.min(self.text.len());
        self.text[..start].matches('\n').count() + 1
    }

    /// An error at the line of `span`.
    pub fn invalid<T>(
        &self,
        span: Range<usize>,
        reason: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(&span),
            reason: reason.into(),
        })
    }

    /// `value` if it lies in `range` (an error naming `key` and the range otherwise), or
    /// `default` when it is absent.
    pub fn integer<T: TryFrom<u64>>(
        &self,
        value: Option<Spanned<u64>>,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let number = *value.get_ref();
        if !range.contains(&number) {
            return self.invalid(
                value.span(),
                format!(
                    "{key} = {number} is out of range; give {} to {}",
                    range.start(),
                    range.end()
                ),
            );
        }
        match T::try_from(number) {
            Ok(converted) => Ok(converted),
            Err(_) => self.invalid(value.span(), format!("{key} = {number} is too large")),
        }
    }

    /// An error about the file as a whole.
    pub fn incomplete<T>(&self, reason: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError::Incomplete {
            file: self.file.to_owned(),
            reason: reason.into(),
        })
    }
}

/// The whole file as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub target: RawTarget,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub listener: Vec<RawListener>,
    #[serde(default)]
    pub subsystem: Vec<RawSubsystem>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub keyring: Vec<RawKeyringKey>,
}

/// A `[[keyring]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyringKey {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
}

/// `[metrics]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub address: Option<Spanned<String>>,
}

/// `[target]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub cores: Option<Spanned<u64>>,
    pub cpus: Option<Spanned<Vec<Spanned<u64>>>>,
    pub c2h_success: Option<bool>,
    pub in_capsule_data_size: Option<Spanned<u64>>,
    pub max_queue_depth: Option<Spanned<u64>>,
    pub max_io_queues: Option<Spanned<u64>>,
    pub max_io_size: Option<Spanned<u64>>,
    pub keep_alive_timeout_ms: Option<Spanned<u64>>,
    pub shutdown_deadline_ms: Option<Spanned<u64>>,
    pub park_after_us: Option<Spanned<u64>>,
    pub cntlid_min: Option<Spanned<u64>>,
    pub cntlid_max: Option<Spanned<u64>>,
    pub rpc_socket: Option<Spanned<String>>,
    pub dhchap_digests: Option<Spanned<Vec<Spanned<String>>>>,
    pub dhchap_dhgroups: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[limits]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub connections: Option<Spanned<u64>>,
    pub connections_per_address: Option<Spanned<u64>>,
    pub controllers_per_host: Option<Spanned<u64>>,
    pub icreq_timeout_ms: Option<Spanned<u64>>,
    pub connect_timeout_ms: Option<Spanned<u64>>,
    pub buffer_bytes_per_host: Option<Spanned<u64>>,
    pub r2t_per_connection: Option<Spanned<u64>>,
}

/// A `[[listener]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub address: Spanned<String>,
    #[serde(default)]
    pub discovery_only: bool,
    /// "tls" or "none" (see `tls`).
    pub secure_channel: Option<Spanned<String>>,
}

/// A `[[subsystem]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubsystem {
    pub nqn: Spanned<String>,
    pub allow_any_host: Option<Spanned<bool>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// `[[subsystem.host]]`: hosts with their keys (see `auth`).
    #[serde(default)]
    pub host: Vec<RawHost>,
    pub require_authentication: Option<Spanned<bool>>,
    pub serial: Option<Spanned<String>>,
    pub model: Option<Spanned<String>>,
    /// Listener addresses, as written in `[[listener]] address`.
    pub listeners: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub namespace: Vec<RawNamespace>,
}

/// A `[[subsystem.namespace]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamespace {
    pub nsid: Spanned<u64>,
    pub pci: Option<Spanned<String>>,
    pub device_nsid: Option<Spanned<u64>>,
    pub ram_mib: Option<Spanned<u64>>,
    pub sim_mib: Option<Spanned<u64>>,
    pub sim_latency_us: Option<Spanned<u64>>,
    pub sim_metadata_bytes: Option<Spanned<u64>>,
    pub sim_log_page_latency_ms: Option<Spanned<u64>>,
    pub block_size: Option<Spanned<u64>>,
}

/// A `[[subsystem.host]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub nqn: Spanned<String>,
    pub dhchap_secret_file: Option<Spanned<String>>,
    pub dhchap_ctrl_secret_file: Option<Spanned<String>>,
    pub tls_psk_file: Option<Spanned<String>>,
}
