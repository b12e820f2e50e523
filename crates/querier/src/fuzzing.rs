//! Entry points for the fuzz targets in `crates/querier/fuzz`: the querier's parsers of outside
//! input that are private to their modules ([`api`](crate::api)'s request parameters,
//! [`discovery`](crate::discovery)'s SD config and file SD parsing), reachable here without
//! becoming part of the querier's API. Not a stable interface; nothing else should use it.

use std::path::Path;

use prom_model::Matcher;

use crate::api::{self, Api};
use crate::discovery::{self, DiscoveryError};
use crate::error::Result;
use crate::params::Form;

/// `start`, `end` and `step` of `/api/v1/query_range`, checked as its handler checks them.
pub fn range_params(form: &Form, default_step: i64) -> Result<(i64, i64, i64)> {
    api::range_params(form, default_step)
}

/// `start` and `end` of `/api/v1/series`, `/labels` and `/label/<name>/values`.
pub fn time_range(form: &Form) -> Result<(i64, i64)> {
    Api::time_range(form)
}

/// The `limit` parameter (0 = none).
pub fn limit(form: &Form) -> Result<usize> {
    api::parse_limit(form)
}

/// The matcher sets of every `param` value (`match[]`, `storeMatch[]`).
pub fn selector_sets(form: &Form, param: &str) -> Result<Vec<Vec<Matcher>>> {
    api::selector_sets(form, param)
}

/// One endpoint an SD config or file SD file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdEndpoint {
    /// The address as written (trimmed), possibly with a `dns*+` prefix.
    pub address: String,
    /// Queried even when unhealthy.
    pub strict: bool,
    /// One endpoint for all the addresses the name stands for.
    pub group: bool,
    /// Whether the entry sets its own dialling settings.
    pub own_client: bool,
}

fn endpoints(specs: Vec<discovery::Spec>) -> Vec<SdEndpoint> {
    specs
        .into_iter()
        .map(|spec| SdEndpoint {
            address: spec.address,
            strict: spec.strict,
            group: spec.group,
            own_client: spec.client.is_some(),
        })
        .collect()
}

/// Parses endpoint SD YAML (`--endpoint.sd-config`).
pub fn sd_config(text: &str) -> std::result::Result<Vec<SdEndpoint>, DiscoveryError> {
    discovery::parse_sd_config(text, "fuzz").map(endpoints)
}

/// Parses a file SD file (`--store.sd-files`); `path` decides JSON (`.json`) or YAML.
pub fn file_sd(text: &str, path: &Path) -> std::result::Result<Vec<SdEndpoint>, DiscoveryError> {
    discovery::parse_file_sd(text, path).map(endpoints)
}

/// Whether a file name matches a file SD glob.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    discovery::glob_matches(pattern, name)
}

/// Whether an address asks for a DNS lookup, and of which name.
pub fn dns_name(address: &str) -> Option<&str> {
    discovery::dns_kind(address).map(|(_, name)| name)
}

/// Splits `host:port` as discovery does before dialling.
pub fn split_host_port(target: &str) -> std::result::Result<(&str, u16), String> {
    discovery::split_host_port(target)
}
