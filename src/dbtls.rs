//! TLS for every PostgreSQL connection the binaries make (rustls, aws-lc-rs); the test
//! harness in `pg` stays plaintext.
//!
//! The URL's `sslmode` decides whether TLS is used: `disable`, `prefer` (the default:
//! TLS when the server offers it) or `require` (refuse a server without it). This module
//! decides what TLS proves:
//! - with `DOB_DATABASE_CA_FILE`, the server's certificate must chain to those PEM
//!   certificates and name the host it was reached at (libpq's `verify-full`);
//! - without it, the certificate is not checked (libpq's `prefer`/`require`): traffic is
//!   encrypted against eavesdropping, but an active man in the middle is not detected.
//!   Debian's PostgreSQL has `ssl = on` with a self-signed certificate, so hosts get
//!   encryption with nothing to provision. Handshake signatures are still verified.

use crate::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The CA file variable, shared by every binary.
pub const CA_FILE_VAR: &str = "DOB_DATABASE_CA_FILE";

/// The connector of the toolkit binaries (dob-backup, dob-restore, dob-promote), with
/// `DOB_DATABASE_CA_FILE` from the environment. dob-api takes it from its config.
pub fn from_env() -> Result<MakeRustlsConnect> {
    connector(ca_file_from_env().as_deref())
}

/// Makes a libpq child (pg_dump, pg_restore) trust the same CA: with `sslmode=require`
/// libpq then verifies the chain too (as `verify-ca`).
pub fn configure_libpq(cmd: &mut Command) {
    if let Some(path) = ca_file_from_env() {
        cmd.env("PGSSLROOTCERT", path);
    }
}

fn ca_file_from_env() -> Option<PathBuf> {
    std::env::var_os(CA_FILE_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The connector for `postgres`/`r2d2_postgres`: verifying against `ca_file` when given.
pub fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect> {
    // The provider is named, not taken from the process default, so a second rustls
    // provider feature elsewhere in the tree cannot make this ambiguous.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::other(format!("TLS protocol versions: {e}")))?;
    let config = match ca_file {
        Some(path) => builder
            .with_root_certificates(load_roots(path)?)
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Every certificate in the PEM file; a file without one is an error, not an empty
/// trust store that would refuse every server with a puzzling handshake failure.
fn load_roots(path: &Path) -> Result<RootCertStore> {
    let bad = |what: String| Error::config(CA_FILE_VAR, format!("{}: {what}", path.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// Accepts any certificate, but checks that the server holds its key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_a_configuration_error() {
        let path = std::env::temp_dir().join(format!("dob-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = connector(Some(&path)).err().expect("refused");
        std::fs::remove_file(&path).unwrap();
        assert!(err.is_config(), "{}", err.chain());
        assert!(
            err.chain().contains("no PEM certificate"),
            "{}",
            err.chain()
        );
    }

    #[test]
    fn a_missing_ca_file_is_a_configuration_error() {
        let err = connector(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .expect("refused");
        assert!(err.is_config(), "{}", err.chain());
        assert!(
            err.chain().contains("/nonexistent/ca.pem"),
            "{}",
            err.chain()
        );
    }
}
