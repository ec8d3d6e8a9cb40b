//! TLS for the shared queue's connections, set in `KUGETSU_QUEUE_URL` as libpq reads it:
//! `sslmode=disable|prefer|require|verify-ca|verify-full` (default `prefer`) and
//! `sslrootcert=FILE` (PEM; `system` or absent: the system's trusted roots).
//!
//! The driver knows only `disable`, `prefer` and `require`, and no `sslrootcert`, so both
//! are taken out of the connection string here and the certificate checks are ours, as libpq
//! does them:
//! - `prefer` and `require` encrypt without checking who answers (`require` with an
//!   `sslrootcert` checks the chain, as libpq does when a root file exists);
//! - `verify-ca` checks that the server's chain ends at a trusted root;
//! - `verify-full` checks that too, and that the certificate names the host connected to.

use std::path::PathBuf;
use std::sync::Arc;

use kugetsu_core::secrets::conninfo::{self, percent_decode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much a connection checks of the server it reaches (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, unchecked; plain otherwise.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a root file is given).
    Require,
    /// TLS with a chain that ends at a trusted root.
    VerifyCa,
    /// TLS with a trusted chain that names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, TlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries plain first; here it is as safe as `prefer`.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::BadMode { value: other.to_string() }),
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    /// The PEM file of trusted roots; `None` for the system's.
    pub(crate) root_cert: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `sslmode` has a value libpq does not know.
    #[error(
        "sslmode={value} is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    BadMode {
        /// The value given.
        value: String,
    },
    /// The `sslrootcert` file cannot be read or holds no certificate.
    #[error("sslrootcert {}: {message}", path.display())]
    RootCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// No `sslrootcert` was given and the system has no trusted roots to use instead.
    #[error(
        "sslmode={mode} checks the server's certificate, but no sslrootcert was given and the \
         system's trusted roots could not be loaded{detail}"
    )]
    NoSystemRoots {
        /// The mode that needs them.
        mode: &'static str,
        /// What loading them said.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// Splits `url` into the connection string the driver reads (without `sslmode` and
/// `sslrootcert`) and the TLS settings. Both forms libpq accepts are read: a URL
/// (`postgres://...?sslmode=verify-full`) and `key=value` pairs.
pub(crate) fn split(url: &str) -> Result<(String, TlsSettings), TlsError> {
    let (rest, pairs) = if conninfo::is_url(url) {
        split_url(url)
    } else {
        match split_keywords(url) {
            Some(split) => split,
            // Unreadable here: the driver's parser says what is wrong with it.
            None => (url.to_string(), Vec::new()),
        }
    };
    let mut settings = TlsSettings { mode: SslMode::Prefer, root_cert: None };
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => settings.mode = SslMode::parse(&value)?,
            _ if value == "system" || value.is_empty() => settings.root_cert = None,
            _ => settings.root_cert = Some(PathBuf::from(value)),
        }
    }
    Ok((rest, settings))
}

fn is_ours(key: &str) -> bool {
    key == "sslmode" || key == "sslrootcert"
}

/// The URL form: parameters after `?`, `&`-separated, percent-encoded.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    // A password pasted unencoded may hold `?`: the parameters start after the user-info,
    // which ends at the last `@` (as masking reads it).
    let after = url.rfind('@').map_or(0, |at| at + 1);
    let Some(mark) = url[after..].find('?').map(|i| after + i) else {
        return (url.to_string(), Vec::new());
    };
    let (base, query) = (&url[..mark], &url[mark + 1..]);
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(key);
        if is_ours(&key) {
            ours.push((key, percent_decode(value)));
        } else {
            kept.push(param);
        }
    }
    let rest =
        if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (rest, ours)
}

/// The `key=value` form: whitespace-separated pairs, a value optionally single-quoted, `\`
/// escaping the next character. `None` when it does not read as that form.
fn split_keywords(s: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut chars = s.chars().peekable();
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        if is_ours(&key) {
            ours.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Some((kept.join(" "), ours))
}

/// The driver's TLS connector for `settings`.
pub(crate) fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verify_chain = match settings.mode {
        SslMode::Disable | SslMode::Prefer => false,
        // As libpq: `require` with a root file given checks the chain against it.
        SslMode::Require => settings.root_cert.is_some(),
        SslMode::VerifyCa | SslMode::VerifyFull => true,
    };
    let verifier: Arc<dyn ServerCertVerifier> = if verify_chain {
        let roots = Arc::new(roots(settings)?);
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsError::Setup(rustls::Error::General(e.to_string())))?;
        if settings.mode == SslMode::VerifyFull { webpki } else { Arc::new(ChainOnly(webpki)) }
    } else {
        Arc::new(Unchecked(provider.clone()))
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn roots(settings: &TlsSettings) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match &settings.root_cert {
        Some(path) => {
            let fail = |message: String| TlsError::RootCert { path: path.clone(), message };
            let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| fail(format!("not a PEM certificate: {e}")))?;
                store.add(cert).map_err(|e| fail(format!("not a usable root: {e}")))?;
            }
            if store.is_empty() {
                return Err(fail("holds no PEM certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let detail = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
                return Err(TlsError::NoSystemRoots { mode: settings.mode.name(), detail });
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the chain must end at a trusted root; the name in it is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name, so a name error means the chain was good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encrypted, but whoever answers is accepted (as libpq does). The
/// handshake's signatures are still checked, so the session is bound to the certificate shown.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// What a failed connection means for its TLS settings, in words a user can act on; `None`
/// when the failure is not about TLS.
pub(crate) fn explain(error: &postgres::Error, settings: &TlsSettings) -> Option<String> {
    let mode = settings.mode.name();
    let roots = match &settings.root_cert {
        Some(path) => format!("the CA in sslrootcert {}", path.display()),
        None => "the system's trusted CAs".to_string(),
    };
    if let Some(db) = error.as_db_error() {
        // PostgreSQL's words for a `hostnossl ... reject` line or no line for a plain
        // connection: "..., no encryption".
        return (db.message().contains("no encryption")).then(|| {
            format!(
                "the server refuses unencrypted connections (sslmode={mode}): set sslmode=verify-full \
                 (or require) in the queue's URL"
            )
        });
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        let rustls_error = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| e.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(cert)) = rustls_error {
            return Some(match cert {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "the server's certificate is not signed by {roots} (sslmode={mode}): \
                     check sslrootcert"
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "the server's certificate does not name the host connected to \
                     (sslmode={mode} checks the name): connect by a name the certificate lists, \
                     or use sslmode=verify-ca"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("the server's certificate has expired (sslmode={mode})")
                }
                other => format!("the server's certificate was refused (sslmode={mode}): {other}"),
            });
        }
        if e.to_string().contains("server does not support TLS") {
            return Some(format!(
                "the server does not accept TLS, and sslmode={mode} requires it: enable ssl on \
                 the server, or connect to one that has it"
            ));
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form_loses_tls_keys_and_keeps_the_rest() {
        let (rest, tls) = split(
            "postgres://u:p%3Fw@db:5432/q?application_name=x&sslmode=verify-full&sslrootcert=%2Fca%20dir%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p%3Fw@db:5432/q?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca dir/ca.pem")));

        let (rest, tls) = split("postgres://u:p?sslmode=x@db/q?sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgres://u:p?sslmode=x@db/q", SslMode::Disable));

        let (rest, tls) = split("postgresql://u@db/q").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode, tls.root_cert),
            ("postgresql://u@db/q", SslMode::Prefer, None)
        );

        let (rest, tls) = split("postgres://u@db/q?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode, tls.root_cert),
            ("postgres://u@db/q", SslMode::Require, None)
        );
    }

    #[test]
    fn keyword_form_loses_tls_keys_and_keeps_the_rest() {
        let (rest, tls) = split(
            "host=db password='a b\\'c' sslmode = verify-ca sslrootcert='/x y/ca.pem' dbname=q",
        )
        .unwrap();
        assert_eq!(rest, "host='db' password='a b\\'c' dbname='q'");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/x y/ca.pem")));
        let config: postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a b'c"[..]));
    }

    #[test]
    fn an_unknown_mode_is_named() {
        let e = split("postgres://db/q?sslmode=verify").unwrap_err();
        assert!(e.to_string().contains("sslmode=verify is not one of"), "{e}");
    }

    #[test]
    fn require_without_roots_builds_without_system_roots() {
        let settings = TlsSettings { mode: SslMode::Require, root_cert: None };
        assert!(connector(&settings).is_ok());
        let settings =
            TlsSettings { mode: SslMode::VerifyFull, root_cert: Some("/nonexistent.pem".into()) };
        let e = connector(&settings).err().unwrap();
        assert!(e.to_string().contains("sslrootcert /nonexistent.pem"), "{e}");
    }
}
