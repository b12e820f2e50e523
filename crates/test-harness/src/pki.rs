//! Test certificates: a CA with a server (`localhost`, `127.0.0.1`) and a client certificate,
//! and an unrelated CA with its own client certificate, written as PEM files to a temporary
//! folder (for TLS tests of servers, clients and the object-storage HTTPS path).

use std::path::PathBuf;

use anyhow::Result;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files of a throw-away PKI; the folder is removed on drop.
#[derive(Debug)]
pub struct TestPki {
    /// The folder that holds the files.
    pub dir: tempfile::TempDir,
    /// The CA certificate that signed the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    /// Its private key.
    pub server_key: PathBuf,
    /// Client certificate (CN `client`) signed by the CA.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// A client certificate signed by another CA.
    pub stranger_cert: PathBuf,
    /// Its private key.
    pub stranger_key: PathBuf,
}

fn new_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String)> {
    let mut params = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )?;
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, ca)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

impl TestPki {
    /// Generates the certificates and writes them to a new temporary folder.
    pub fn generate() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        let ca = new_ca("test ca")?;
        let stranger_ca = new_ca("stranger ca")?;
        let (server_cert, server_key) = leaf(
            &ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_cert, client_key) =
            leaf(&ca, &["client"], ExtendedKeyUsagePurpose::ClientAuth)?;
        let (stranger_cert, stranger_key) = leaf(
            &stranger_ca,
            &["stranger"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            ca: write("ca.pem", &ca.pem())?,
            server_cert: write("server.pem", &server_cert)?,
            server_key: write("server-key.pem", &server_key)?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client-key.pem", &client_key)?,
            stranger_cert: write("stranger.pem", &stranger_cert)?,
            stranger_key: write("stranger-key.pem", &stranger_key)?,
            dir,
        })
    }
}
