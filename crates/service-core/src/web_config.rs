//! Prometheus' web configuration file (`--http.config`): TLS and basic authentication for every
//! HTTP endpoint.
//!
//! Supported keys: `tls_server_config.{cert_file,key_file,client_auth_type,client_ca_file,
//! min_version}` and `basic_auth_users: {user: bcrypt-hash}`. Relative paths are resolved against
//! the file's directory, as Prometheus does. Any other key is refused rather than silently
//! ignored, so a setting that would tighten security is never dropped.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::flags::TlsVersion;
use crate::tls::{ClientAuth, ServerTlsSettings};

const WHAT: &str = "http.config";

/// A parsed web configuration.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// TLS for the HTTP server, when configured.
    pub tls: Option<ServerTlsSettings>,
    /// Basic-auth users, when configured.
    pub basic_auth: Option<BasicAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTlsServerConfig>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServerConfig {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::Config {
        what: WHAT,
        message: message.into(),
    }
}

impl WebConfig {
    /// Reads and parses the file `--http.config` names.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            what: WHAT,
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base_dir)
    }

    /// Parses web-config YAML; relative file names are taken relative to `base_dir`.
    pub fn parse(yaml: &str, base_dir: &Path) -> Result<Self> {
        let raw: RawWebConfig = if yaml.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(yaml).map_err(|error| config_error(error.to_string()))?
        };
        let tls = match raw.tls_server_config {
            Some(tls) => parse_tls(tls, base_dir)?,
            None => None,
        };
        let basic_auth = match raw.basic_auth_users {
            Some(users) if !users.is_empty() => Some(BasicAuth::new(users)?),
            _ => None,
        };
        Ok(Self { tls, basic_auth })
    }
}

fn parse_tls(raw: RawTlsServerConfig, base_dir: &Path) -> Result<Option<ServerTlsSettings>> {
    let resolve = |path: PathBuf| {
        if path.is_absolute() {
            path
        } else {
            base_dir.join(path)
        }
    };
    let (cert_file, key_file) = match (raw.cert_file, raw.key_file) {
        (None, None) => {
            if raw.client_ca_file.is_some() || raw.client_auth_type.is_some() {
                return Err(config_error(
                    "tls_server_config needs cert_file and key_file",
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(config_error("missing key_file")),
        (None, Some(_)) => return Err(config_error("missing cert_file")),
        (Some(cert_file), Some(key_file)) => (resolve(cert_file), resolve(key_file)),
    };
    let client_auth = match raw.client_auth_type.as_deref() {
        None | Some("") | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(config_error(format!(
                "client_auth_type {other} (unverified client certificates) is not supported"
            )));
        }
        Some(other) => return Err(config_error(format!("invalid client_auth_type {other:?}"))),
    };
    let client_ca_file = raw.client_ca_file.map(resolve);
    if client_ca_file.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(config_error(
            "client_ca_file is set but client_auth_type is NoClientCert",
        ));
    }
    // Prometheus' default minimum is TLS 1.2.
    let min_version = match raw.min_version.as_deref() {
        None | Some("") | Some("TLS12") => TlsVersion::Tls12,
        Some("TLS13") => TlsVersion::Tls13,
        Some(other @ ("TLS10" | "TLS11")) => {
            return Err(config_error(format!(
                "min_version {other} is not supported, use TLS12"
            )));
        }
        Some(other) => return Err(config_error(format!("unknown min_version {other:?}"))),
    };
    Ok(Some(ServerTlsSettings {
        cert_file,
        key_file,
        client_ca_file,
        client_auth,
        min_version,
    }))
}

/// Credentials whose bcrypt outcome is remembered (both outcomes, as Prometheus'
/// exporter-toolkit does); when full the memory is cleared.
const CHECK_CACHE_SIZE: usize = 1024;

/// Basic-auth users with their bcrypt password hashes, and the outcomes of recent checks: a
/// client sending the same credentials again costs a hash lookup, not a bcrypt run. Credentials
/// are remembered only as a 128-bit keyed hash (keys random per process), never in clear.
#[derive(Clone)]
pub struct BasicAuth {
    users: Arc<BTreeMap<String, String>>,
    checked: Arc<Mutex<HashMap<u128, bool>>>,
    keys: Arc<(RandomState, RandomState)>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys())
            .finish()
    }
}

impl BasicAuth {
    /// Users mapped to bcrypt hashes (`$2a$`, `$2b$` or `$2y$`).
    pub fn new(users: BTreeMap<String, String>) -> Result<Self> {
        for (user, hash) in &users {
            if !hash.starts_with("$2") {
                return Err(config_error(format!(
                    "password of user {user:?} is not a bcrypt hash"
                )));
            }
        }
        Ok(Self {
            users: Arc::new(users),
            checked: Arc::new(Mutex::new(HashMap::new())),
            keys: Arc::new((RandomState::new(), RandomState::new())),
        })
    }

    /// The keyed hash that stands for one `Authorization` header value.
    fn fingerprint(&self, authorization: &str) -> u128 {
        let (first, second) = &*self.keys;
        (u128::from(first.hash_one(authorization)) << 64)
            | u128::from(second.hash_one(authorization))
    }

    /// The remembered outcome of checking this header value, if any: cheap, fine on an async
    /// worker. `Some(false)` for a missing or malformed header.
    pub fn cached(&self, authorization: Option<&str>) -> Option<bool> {
        let Some(authorization) = authorization else {
            return Some(false);
        };
        if parse_basic_header(authorization).is_none() {
            return Some(false);
        }
        let fingerprint = self.fingerprint(authorization);
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&fingerprint)
            .copied()
    }

    /// Checks an `Authorization` header value. Slow by design (bcrypt): call it off the async
    /// workers, e.g. in `spawn_blocking`.
    pub fn check_header(&self, authorization: Option<&str>) -> bool {
        if let Some(outcome) = self.cached(authorization) {
            return outcome;
        }
        let Some(authorization) = authorization else {
            return false;
        };
        let outcome = self.verify(authorization);
        let mut checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if checked.len() >= CHECK_CACHE_SIZE {
            checked.clear();
        }
        checked.insert(self.fingerprint(authorization), outcome);
        outcome
    }

    /// Runs bcrypt for one header value.
    fn verify(&self, authorization: &str) -> bool {
        let Some((user, password)) = parse_basic_header(authorization) else {
            return false;
        };
        match self.users.get(&user) {
            Some(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
            None => {
                // Spend the same time on unknown users so they cannot be told apart by timing.
                if let Some(any_hash) = self.users.values().next() {
                    let _ = bcrypt::verify(&password, any_hash);
                }
                false
            }
        }
    }
}

/// Splits `Basic base64(user:password)` into its parts.
fn parse_basic_header(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = decode_base64(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Standard base64 with padding, as RFC 7617 uses.
fn decode_base64(input: &str) -> Option<Vec<u8>> {
    fn value(symbol: u8) -> Option<u32> {
        match symbol {
            b'A'..=b'Z' => Some(u32::from(symbol - b'A')),
            b'a'..=b'z' => Some(u32::from(symbol - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(symbol - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = input.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut output = Vec::with_capacity(bytes.len() / 4 * 3);
    for (chunk_index, chunk) in bytes.chunks(4).enumerate() {
        let is_last = chunk_index + 1 == bytes.len() / 4;
        let padding = chunk
            .iter()
            .rev()
            .take_while(|&&symbol| symbol == b'=')
            .count();
        if padding > 2 || (padding > 0 && !is_last) {
            return None;
        }
        let mut group: u32 = 0;
        for &symbol in &chunk[..4 - padding] {
            group = (group << 6) | value(symbol)?;
        }
        group <<= 6 * padding as u32;
        let decoded = [(group >> 16) as u8, (group >> 8) as u8, group as u8];
        output.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tls_and_users() {
        let yaml = r#"
tls_server_config:
  cert_file: server.crt
  key_file: /abs/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
basic_auth_users:
  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi
"#;
        let config = WebConfig::parse(yaml, Path::new("/etc/thanos")).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/etc/thanos/server.crt"));
        assert_eq!(tls.key_file, PathBuf::from("/abs/server.key"));
        assert_eq!(
            tls.client_ca_file,
            Some(PathBuf::from("/etc/thanos/ca.crt"))
        );
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert!(config.basic_auth.is_some());
    }

    #[test]
    fn empty_file_means_plain_http() {
        let config = WebConfig::parse("", Path::new(".")).unwrap();
        assert!(config.tls.is_none());
        assert!(config.basic_auth.is_none());
        let config = WebConfig::parse("tls_server_config: {}\n", Path::new(".")).unwrap();
        assert!(config.tls.is_none());
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for yaml in [
            "tls_server_config:\n  cert_file: a\n",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
            "http_server_config:\n  http2: false\n",
            "basic_auth_users:\n  bob: plaintext\n",
            "tls_server_config: [",
        ] {
            let error = WebConfig::parse(yaml, Path::new(".")).unwrap_err();
            assert!(
                error.to_string().starts_with("parse http.config"),
                "{yaml}: {error}"
            );
        }
    }

    #[test]
    fn decodes_base64() {
        assert_eq!(decode_base64("YWxpY2U6c2VjcmV0").unwrap(), b"alice:secret");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("YQ=").is_none());
        assert!(decode_base64("Y===").is_none());
        assert!(decode_base64("YQ==YWI=").is_none());
        assert!(decode_base64("YW!j").is_none());
    }

    #[test]
    fn checks_basic_auth() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = BTreeMap::from([("alice".to_owned(), hash)]);
        let auth = BasicAuth::new(users).unwrap();
        // "alice:secret", "alice:wrong", "mallory:secret"
        assert!(auth.check_header(Some("Basic YWxpY2U6c2VjcmV0")));
        assert!(auth.check_header(Some("basic YWxpY2U6c2VjcmV0")));
        assert!(!auth.check_header(Some("Basic YWxpY2U6d3Jvbmc=")));
        assert!(!auth.check_header(Some("Basic bWFsbG9yeTpzZWNyZXQ=")));
        assert!(!auth.check_header(Some("Bearer YWxpY2U6c2VjcmV0")));
        assert!(!auth.check_header(None));
    }

    #[test]
    fn remembers_outcomes_without_keeping_passwords_and_stays_bounded() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new(BTreeMap::from([("alice".to_owned(), hash)])).unwrap();
        let right = "Basic YWxpY2U6c2VjcmV0";
        let wrong = "Basic YWxpY2U6d3Jvbmc=";
        assert_eq!(auth.cached(Some(right)), None);
        assert_eq!(auth.cached(Some(wrong)), None);
        assert!(auth.check_header(Some(right)));
        assert!(!auth.check_header(Some(wrong)));
        assert_eq!(auth.cached(Some(right)), Some(true));
        assert_eq!(auth.cached(Some(wrong)), Some(false));
        // A malformed or missing header is refused without bcrypt or memory.
        assert_eq!(auth.cached(Some("Basic !!!")), Some(false));
        assert_eq!(auth.cached(None), Some(false));
        // Outcomes are keyed per process: another instance remembers nothing.
        let other = BasicAuth::new(BTreeMap::from([(
            "alice".to_owned(),
            "$2b$04$x".to_owned(),
        )]))
        .unwrap();
        assert_ne!(other.fingerprint(right), auth.fingerprint(right));
        for index in 0..CHECK_CACHE_SIZE + 10 {
            let header = format!(
                "Basic {}",
                encode_base64_for_test(format!("alice:wrong{index}").as_bytes())
            );
            assert!(!auth.check_header(Some(&header)));
        }
        let remembered = auth.checked.lock().unwrap().len();
        assert!(remembered <= CHECK_CACHE_SIZE, "{remembered}");
        assert!(auth.check_header(Some(right)));
    }

    fn encode_base64_for_test(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let word = chunk.iter().enumerate().fold(0_u32, |word, (index, byte)| {
                word | (u32::from(*byte) << (16 - 8 * index))
            });
            for index in 0..4 {
                if index <= chunk.len() {
                    out.push(char::from(
                        ALPHABET[((word >> (18 - 6 * index)) & 63) as usize],
                    ));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
