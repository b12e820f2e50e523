//! Thanos' objstore configuration: the YAML given by `--objstore.config-file` or
//! `--objstore.config`, unchanged.
//!
//! ```yaml
//! type: S3            # S3 | AZURE | GCS | FILESYSTEM, any case
//! config: { ... }     # the provider's keys, see the submodules
//! prefix: tenant-a    # optional key prefix inside the bucket
//! ```
//!
//! Parsing is strict like Thanos' `yaml.UnmarshalStrict`: an unknown key at any level is an
//! error naming it; a missing required key is an error naming it. Keys Thanos accepts but this
//! client cannot apply are accepted and logged at debug level when set. Secrets are held in
//! [`Secret`], whose `Debug` is redacted.

mod azure;
mod gcs;
mod http;
mod s3;
mod values;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use azure::{AzureConfig, PipelineConfig, ReaderConfig};
pub use gcs::GcsConfig;
pub use http::{HttpConfig, TlsConfig};
pub use s3::{S3Config, SseConfig, TraceConfig};
pub use values::{PromDuration, Secret};

use crate::error::{Error, Result};

/// A parsed objstore configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjstoreConfig {
    /// The provider and its settings.
    pub provider: ProviderConfig,
    /// Key prefix inside the bucket, without leading or trailing `/`; empty = none.
    pub prefix: String,
}

/// The provider named by `type`, with its `config` block.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProviderConfig {
    /// `type: S3`.
    S3(S3Config),
    /// `type: AZURE`.
    Azure(AzureConfig),
    /// `type: GCS`.
    Gcs(GcsConfig),
    /// `type: FILESYSTEM`.
    Filesystem(FilesystemConfig),
}

impl ProviderConfig {
    /// The provider's name as written in `type`, upper case.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::S3(_) => "S3",
            ProviderConfig::Azure(_) => "AZURE",
            ProviderConfig::Gcs(_) => "GCS",
            ProviderConfig::Filesystem(_) => "FILESYSTEM",
        }
    }
}

/// Thanos' FILESYSTEM `config` block: a local directory as the bucket (single node, tests,
/// demos).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    /// The directory holding the objects (required; created if missing).
    pub directory: PathBuf,
}

/// The top level of the YAML, before the provider block is interpreted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "type", default)]
    provider: String,
    #[serde(default, rename = "config")]
    _config: serde_yaml_ng::Value,
    #[serde(default)]
    prefix: Option<String>,
}

impl ObjstoreConfig {
    /// Parses the objstore YAML.
    pub fn parse(yaml: &str) -> Result<Self> {
        if yaml.trim().is_empty() {
            return Err(Error::config("the configuration is empty"));
        }
        let raw: RawConfig =
            serde_yaml_ng::from_str(yaml).map_err(|error| Error::config(error.to_string()))?;
        let provider_name = raw.provider.to_ascii_uppercase();
        let provider = match provider_name.as_str() {
            "S3" => {
                let s3: S3Config = provider_block(yaml)?;
                s3.validate()?;
                ProviderConfig::S3(s3)
            }
            "AZURE" => {
                let azure: AzureConfig = provider_block(yaml)?;
                azure.validate()?;
                ProviderConfig::Azure(azure)
            }
            "GCS" => {
                let gcs: GcsConfig = provider_block(yaml)?;
                gcs.validate()?;
                ProviderConfig::Gcs(gcs)
            }
            "FILESYSTEM" => {
                let filesystem: FilesystemConfig = provider_block(yaml)?;
                if filesystem.directory.as_os_str().is_empty() {
                    return Err(Error::config("missing required key `config.directory`"));
                }
                ProviderConfig::Filesystem(filesystem)
            }
            "" => return Err(Error::config("missing required key `type`")),
            _ => {
                return Err(Error::UnsupportedProvider {
                    provider: raw.provider,
                });
            }
        };
        let prefix = raw.prefix.unwrap_or_default().trim_matches('/').to_owned();
        Ok(Self { provider, prefix })
    }

    /// Loads the configuration from Thanos' two flags: `--objstore.config-file` (a path) or
    /// `--objstore.config` (inline YAML). Exactly one must be given, as in Thanos. As Thanos
    /// does, `$(NAME)` references are replaced by the environment variable `NAME` (Kubernetes'
    /// convention, for secrets injected as variables); an unset variable is an error.
    pub fn from_flags(file: Option<&Path>, inline: Option<&str>) -> Result<Self> {
        let inline = inline.filter(|text| !text.trim().is_empty());
        let yaml = match (file, inline) {
            (Some(_), Some(_)) => return Err(Error::ConfigFlags { given: "both" }),
            (None, None) => return Err(Error::ConfigFlags { given: "neither" }),
            (None, Some(yaml)) => yaml.to_owned(),
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|source| Error::ReadConfigFile {
                    path: path.to_owned(),
                    source,
                })?
            }
        };
        Self::parse(&expand_env(&yaml, |name| std::env::var(name).ok())?)
    }

    /// A filesystem configuration for `directory`, as `type: FILESYSTEM` would give.
    pub fn filesystem(directory: impl Into<PathBuf>) -> Self {
        Self {
            provider: ProviderConfig::Filesystem(FilesystemConfig {
                directory: directory.into(),
            }),
            prefix: String::new(),
        }
    }
}

/// Replaces every `$(NAME)` (`NAME` of ASCII letters, digits and `_`) with `lookup(NAME)`;
/// an unset variable is an error naming it. Other `$` text is kept as written.
fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after
            .bytes()
            .take_while(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
            .count();
        if name_len == 0 || !after[name_len..].starts_with(')') {
            expanded.push_str("$(");
            rest = after;
            continue;
        }
        let name = &after[..name_len];
        let value = lookup(name).ok_or_else(|| {
            Error::config(format!(
                "found reference to unset environment variable {name:?}"
            ))
        })?;
        expanded.push_str(&value);
        rest = &after[name_len + 1..];
    }
    expanded.push_str(rest);
    Ok(expanded)
}

/// The whole document with the provider's `config` block typed, so that errors carry the key's
/// path (`config.http_config.idle_conn_timeout: ...`) and its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedConfig<T> {
    #[serde(rename = "type")]
    _provider: String,
    #[serde(default = "Option::default")]
    config: Option<T>,
    #[serde(default, rename = "prefix")]
    _prefix: Option<String>,
}

/// Deserializes the provider's `config` block strictly (absent or null = all defaults).
fn provider_block<T: serde::de::DeserializeOwned + Default>(yaml: &str) -> Result<T> {
    let typed: TypedConfig<T> =
        serde_yaml_ng::from_str(yaml).map_err(|error| Error::config(error.to_string()))?;
    Ok(typed.config.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(yaml: &str) -> String {
        match ObjstoreConfig::parse(yaml) {
            Ok(config) => panic!("expected an error for {yaml:?}, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn check_error(yaml: &str, expected_fragment: &str) {
        let message = parse_error(yaml);
        assert!(
            message.contains(expected_fragment),
            "error {message:?} lacks {expected_fragment:?}"
        );
    }

    #[test]
    fn type_is_case_insensitive_and_prefix_trimmed() {
        let config = ObjstoreConfig::parse(
            "type: filesystem\nconfig:\n  directory: /tmp/x\nprefix: /a/b/\n",
        )
        .unwrap();
        assert_eq!(config.prefix, "a/b");
        assert_eq!(
            config.provider,
            ProviderConfig::Filesystem(FilesystemConfig {
                directory: "/tmp/x".into()
            })
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        check_error("type: S3\nconfig:\n  bucket: b\n", "`config.endpoint`");
        check_error("type: S3\nconfig:\n  endpoint: e\n", "`config.bucket`");
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  bukket: x\n",
            "bukket",
        );
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  http_config:\n    idle_timeout: 1s\n",
            "config.http_config: unknown field `idle_timeout`",
        );
        check_error("type: FILESYSTEM\nconfig: {}\n", "`config.directory`");
        check_error("type: FILESYSTEM\n", "`config.directory`");
        check_error(
            "type: FILESYSTEM\nconfig:\n  directory: x\nextra: 1\n",
            "extra",
        );
        check_error("config:\n  directory: x\n", "`type`");
        check_error(
            "type: AZURE\nconfig:\n  container: c\n",
            "`config.storage_account`",
        );
        check_error(
            "type: AZURE\nconfig:\n  storage_account: a\n",
            "`config.container`",
        );
        check_error("type: GCS\nconfig: {}\n", "`config.bucket`");
        check_error("", "empty");
    }

    #[test]
    fn unsupported_provider_is_named() {
        check_error("type: SWIFT\nconfig: {}\n", "\"SWIFT\" is not supported");
        check_error("type: nosuch\n", "\"nosuch\" is not supported");
    }

    #[test]
    fn invalid_values_are_rejected() {
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  bucket_lookup_type: dns\n",
            "bucket_lookup_type",
        );
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  http_config:\n    idle_conn_timeout: 90\n",
            "config.http_config: invalid duration \"90\"",
        );
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  http_config:\n    idle_conn_timeout: 90s5\n",
            "invalid duration",
        );
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  insecure: maybe\n",
            "config.insecure",
        );
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  access_key: k\n",
            "`config.secret_key`",
        );
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: http://e\n",
            "without a scheme",
        );
        check_error(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  sse_config:\n    type: SSE-X\n",
            "sse_config.type",
        );
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let secret = "s3cr3t-value-123";
        let yaml = format!(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  access_key: ak\n  secret_key: {secret}\n  session_token: {secret}\n"
        );
        let config = ObjstoreConfig::parse(&yaml).unwrap();
        assert!(!format!("{config:?}").contains(secret));
        let azure = format!(
            "type: AZURE\nconfig:\n  storage_account: a\n  container: c\n  storage_account_key: {secret}\n  client_secret: {secret}\n"
        );
        // Invalid (a principal secret without tenant/client id), and the error must not echo it.
        let message = parse_error(&azure);
        assert!(!message.contains(secret), "{message}");
        let numeric = "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  access_key: ak\n  secret_key: [123456789]\n";
        assert!(!parse_error(numeric).contains("123456789"));
    }

    #[test]
    fn flags_need_exactly_one_source() {
        let inline = "type: FILESYSTEM\nconfig:\n  directory: /tmp/x\n";
        assert!(ObjstoreConfig::from_flags(None, Some(inline)).is_ok());
        let neither = ObjstoreConfig::from_flags(None, None).unwrap_err();
        assert!(neither.to_string().contains("neither"), "{neither}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objstore.yml");
        std::fs::write(&path, inline).unwrap();
        let both = ObjstoreConfig::from_flags(Some(&path), Some(inline)).unwrap_err();
        assert!(both.to_string().contains("both"), "{both}");
        let from_file = ObjstoreConfig::from_flags(Some(&path), None).unwrap();
        assert_eq!(from_file, ObjstoreConfig::parse(inline).unwrap());
        let missing =
            ObjstoreConfig::from_flags(Some(&dir.path().join("nope.yml")), None).unwrap_err();
        assert!(missing.to_string().contains("nope.yml"), "{missing}");
    }

    #[test]
    fn environment_references_are_expanded() {
        let lookup = |name: &str| (name == "S3_SECRET").then(|| "from-env".to_owned());
        assert_eq!(
            expand_env(
                "secret_key: $(S3_SECRET)\nx: $(S3_SECRET)$(S3_SECRET)",
                lookup
            )
            .unwrap(),
            "secret_key: from-env\nx: from-envfrom-env"
        );
        assert_eq!(
            expand_env("a: $HOME $( x) $(", lookup).unwrap(),
            "a: $HOME $( x) $("
        );
        let error = expand_env("k: $(NOT_SET_ANYWHERE)", lookup).unwrap_err();
        assert!(
            error.to_string().contains("\"NOT_SET_ANYWHERE\""),
            "{error}"
        );
        // Through the flag helper, with a variable every test environment has.
        let path = std::env::var("PATH").unwrap();
        let inline = "type: FILESYSTEM\nconfig:\n  directory: \"$(PATH)\"\n";
        let config = ObjstoreConfig::from_flags(None, Some(inline)).unwrap();
        assert_eq!(config, ObjstoreConfig::filesystem(path));
    }

    #[test]
    fn thanos_defaults_apply() {
        let config =
            ObjstoreConfig::parse("type: s3\nconfig:\n  bucket: b\n  endpoint: e\n").unwrap();
        let ProviderConfig::S3(s3) = config.provider else {
            panic!("not s3");
        };
        assert_eq!(s3.part_size, 64 * 1024 * 1024);
        assert!(s3.send_content_md5);
        assert_eq!(
            s3.http_config.idle_conn_timeout,
            PromDuration::from_secs(90)
        );
        let config =
            ObjstoreConfig::parse("type: AZURE\nconfig:\n  storage_account: a\n  container: c\n")
                .unwrap();
        let ProviderConfig::Azure(azure) = config.provider else {
            panic!("not azure");
        };
        assert!(azure.storage_create_container);
        assert_eq!(azure.endpoint, "blob.core.windows.net");
    }
}
