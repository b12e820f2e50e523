//! TLS material and rustls configurations shared by the HTTP and gRPC servers and the gRPC client.
//!
//! Everything uses the `ring` provider explicitly, so no process-wide default provider is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::error::{Error, Result};
use crate::flags::TlsVersion;

/// How a TLS server treats client certificates (Go's `tls.ClientAuthType` names, as used by
/// Prometheus' web-config `client_auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    NoClientCert,
    /// A client certificate is verified against the client CA when one is presented.
    VerifyClientCertIfGiven,
    /// A client certificate signed by the client CA is required.
    RequireAndVerifyClientCert,
}

/// What a TLS server needs: its certificate chain and key, and optionally client verification.
#[derive(Debug, Clone)]
pub struct ServerTlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// Lowest protocol version accepted.
    pub min_version: TlsVersion,
}

/// The crypto provider every configuration here uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn protocol_versions(
    min_version: TlsVersion,
) -> Result<&'static [&'static SupportedProtocolVersion]> {
    static TLS12_AND_13: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min_version {
        TlsVersion::Tls13 => Ok(&TLS13_ONLY),
        TlsVersion::Tls12 => Ok(&TLS12_AND_13),
        TlsVersion::Tls10 | TlsVersion::Tls11 => Err(Error::TlsConfig(
            "TLS 1.0 and 1.1 are not supported; use a minimum version of 1.2 or 1.3".to_owned(),
        )),
    }
}

/// Reads every certificate in a PEM file.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let tls_error = |message: String| Error::Tls {
        path: path.to_owned(),
        message,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| tls_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| tls_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(tls_error("no certificate found".to_owned()));
    }
    Ok(certificates)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| Error::Tls {
        path: path.to_owned(),
        message: error.to_string(),
    })
}

fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates(path)? {
        roots.add(certificate).map_err(|error| Error::Tls {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
    }
    Ok(roots)
}

/// Builds a rustls server configuration advertising `alpn` protocols (e.g. `h2`, `http/1.1`).
pub fn server_config(settings: &ServerTlsSettings, alpn: &[&[u8]]) -> Result<ServerConfig> {
    let versions = protocol_versions(settings.min_version)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|error| Error::TlsConfig(error.to_string()))?;
    let builder = match (settings.client_auth, &settings.client_ca_file) {
        (ClientAuth::NoClientCert, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(Error::TlsConfig(
                "client certificate verification needs a client CA file".to_owned(),
            ));
        }
        (client_auth, Some(ca_file)) => {
            let roots = Arc::new(load_roots(ca_file)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if client_auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|error| Error::TlsConfig(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certificates = load_certificates(&settings.cert_file)?;
    let key = load_private_key(&settings.key_file)?;
    let mut config = builder
        .with_single_cert(certificates, key)
        .map_err(|error| Error::Tls {
            path: settings.key_file.clone(),
            message: error.to_string(),
        })?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// What a TLS client needs (from `--grpc-client-tls-*`).
#[derive(Debug, Clone, Default)]
pub struct ClientTlsSettings {
    /// PEM CA bundle servers must chain to; the system has no default store here, so without it
    /// only `skip_verify` connects.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM client key for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate.
    pub skip_verify: bool,
}

/// Builds a rustls client configuration advertising `alpn` protocols.
pub fn client_config(settings: &ClientTlsSettings, alpn: &[&[u8]]) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::TlsConfig(error.to_string()))?;
    let builder = if settings.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider())))
    } else {
        let roots = match &settings.ca_file {
            Some(ca_file) => load_roots(ca_file)?,
            None => RootCertStore::empty(),
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert_file), Some(key_file)) => builder
            .with_client_auth_cert(load_certificates(cert_file)?, load_private_key(key_file)?)
            .map_err(|error| Error::Tls {
                path: key_file.clone(),
                message: error.to_string(),
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::TlsConfig(
                "a client certificate needs both a certificate and a key file".to_owned(),
            ));
        }
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// The name a client checks the server certificate against.
pub fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned())
        .map_err(|error| Error::TlsConfig(format!("invalid server name {name:?}: {error}")))
}

/// `--grpc-client-tls-skip-verify`: accepts any certificate, still checks handshake signatures.
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
