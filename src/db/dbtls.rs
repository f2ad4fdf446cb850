//! TLS for every PostgreSQL connection the binaries make (rustls, aws-lc-rs); the test
//! harness (`testing`) stays plaintext.
//!
//! The URL's `sslmode` decides whether TLS is used and what it proves:
//! - `verify-full` (what the hosts use): TLS, and the server's certificate must chain to
//!   the PEM certificates of `DOB_DATABASE_CA_FILE` (required) and name the host it was
//!   reached at, by DNS name or IP address;
//! - `require`, `prefer` (the default: TLS when the server offers it), `disable`: with
//!   `DOB_DATABASE_CA_FILE` the certificate is still verified as above; without it, it
//!   is not checked: traffic is encrypted against eavesdropping, but an active man in
//!   the middle is not detected. dob-api refuses these modes unless
//!   `DOB_ALLOW_INSECURE_DB=1` says this is a local stack or a test.
//!
//! The driver (`postgres`) knows only `disable`, `prefer` and `require`, so `verify-full`
//! is handed to it as `require` with the verifying connector; libpq children (pg_dump,
//! pg_restore) get the URL unchanged and the CA in `PGSSLROOTCERT`.

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

/// What a URL's `sslmode` asks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The driver's configuration for `url` and the `sslmode` it asked for. `what` names
/// the URL's source in errors (a variable or a flag).
pub fn parse_url(url: &str, what: &str) -> Result<(postgres::Config, SslMode)> {
    let mode = match crate::db::conninfo::ssl_mode(url).as_deref() {
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-full") => SslMode::VerifyFull,
        Some("verify-ca") => {
            return Err(Error::config(
                what,
                "sslmode=verify-ca is not supported: use verify-full (the certificate must also name the host)",
            ))
        }
        Some(other) => {
            return Err(Error::config(
                what,
                format!("sslmode={other:?} is not one of disable, prefer, require, verify-full"),
            ))
        }
    };
    let config = crate::db::conninfo::for_driver(url)
        .parse::<postgres::Config>()
        .map_err(|e| Error::config(what, format!("is not a valid PostgreSQL URL: {e}")))?;
    Ok((config, mode))
}

/// Whether every host of `config` is a Unix socket: nothing crosses a network, so TLS
/// has nothing to protect (and the server authenticates the peer by its user id).
pub fn local_only(config: &postgres::Config) -> bool {
    !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| matches!(host, postgres::config::Host::Unix(_)))
}

/// The connector for `mode`: `verify-full` without a CA file is a configuration error,
/// not a silently unverified connection.
pub fn connector_for(mode: SslMode, ca_file: Option<&Path>) -> Result<MakeRustlsConnect> {
    if mode == SslMode::VerifyFull && ca_file.is_none() {
        return Err(Error::config(
            CA_FILE_VAR,
            "is required by sslmode=verify-full: the PEM certificate of the CA that signed the database servers' certificates",
        ));
    }
    connector(ca_file)
}

/// The toolkit binaries' (dob-backup, dob-restore, dob-promote) driver configuration and
/// connector for `url`, with `DOB_DATABASE_CA_FILE` from the environment. dob-api takes
/// the CA file from its config.
pub fn client_config(url: &str, what: &str) -> Result<(postgres::Config, MakeRustlsConnect)> {
    let (config, mode) = parse_url(url, what)?;
    Ok((config, connector_for(mode, ca_file_from_env().as_deref())?))
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
    fn verify_full_reaches_the_driver_as_require_and_needs_a_ca_file() {
        let (config, mode) =
            parse_url("postgresql://dob@10.0.0.1/dob?sslmode=verify-full", "url").unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(config.get_ssl_mode(), postgres::config::SslMode::Require);
        let err = connector_for(mode, None).err().expect("refused");
        assert!(err.chain().contains(CA_FILE_VAR), "{}", err.chain());
        let (_, mode) = parse_url("postgresql://dob@10.0.0.1/dob", "url").unwrap();
        assert_eq!(mode, SslMode::Prefer);
    }

    #[test]
    fn unsupported_ssl_modes_are_refused_by_name() {
        for (url, says) in [
            ("postgresql://h/db?sslmode=verify-ca", "use verify-full"),
            ("postgresql://h/db?sslmode=allow", "\"allow\" is not one of"),
            ("host=h sslmode=bogus", "\"bogus\" is not one of"),
        ] {
            let err = parse_url(url, "DOB_DATABASE_URL").expect_err(url);
            assert!(err.is_config());
            assert!(err.chain().contains(says), "{url}: {}", err.chain());
        }
    }

    #[test]
    fn only_socket_hosts_count_as_local() {
        let socket = "host=/var/run/postgresql dbname=dob".parse().unwrap();
        assert!(local_only(&socket));
        let tcp = "postgresql://127.0.0.1/dob".parse().unwrap();
        assert!(!local_only(&tcp));
    }

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
