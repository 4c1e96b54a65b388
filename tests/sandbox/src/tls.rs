//! HTTPS for the three listeners ([`crate::SandboxConfig::tls`]).
//!
//! The real services are HTTPS only, and some unmodified clients refuse anything else: Microsoft's Python
//! `DataverseClient` raises on an `http://` base URL, and azure-identity / MSAL only talk to an `https://`
//! authority. So the sandbox can serve TLS with a throw-away certificate authority made at start: a CA
//! certificate (handed to clients as their trust anchor, e.g. `REQUESTS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS`,
//! `SSL_CERT_FILE`) and a server certificate it signs for `127.0.0.1` and `localhost`.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub(crate) struct Tls {
    pub acceptor: TlsAcceptor,
    /// The CA certificate (PEM) that signed the server certificate.
    pub ca_pem: String,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("sandbox TLS set-up: {e}"))
}

pub(crate) fn generate() -> std::io::Result<Tls> {
    let ca_key = KeyPair::generate().map_err(io_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(io_err)?;
    ca.distinguished_name.push(DnType::CommonName, "p2c sandbox test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(io_err)?;

    let key = KeyPair::generate().map_err(io_err)?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).map_err(io_err)?;
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(io_err)?;

    let chain = vec![cert.der().clone(), CertificateDer::from(ca_cert.der().to_vec())];
    let pk = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // An explicit provider: the workspace may enable more than one rustls backend.
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io_err)?
        .with_no_client_auth()
        .with_single_cert(chain, pk)
        .map_err(io_err)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
        ca_pem: ca_cert.pem(),
    })
}
