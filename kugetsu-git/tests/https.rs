//! The token over https: used for clone and fetch, never stored or shown.
//!
//! The server is the smart-HTTP test server behind rustls with a certificate from a throwaway
//! CA. gix's https client trusts the system roots, which `SSL_CERT_FILE` replaces; since the
//! environment of a running test must not be changed (other tests run in parallel threads), the
//! test re-runs its own binary with `SSL_CERT_FILE` pointing at the throwaway CA.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use kugetsu_core::worktree::{Secret, WorktreeError};
use support::http::{GitHttpServer, make_certificates, server_config};
use support::{Fixture, error_text};

const TOKEN: &str = "kgs_tok_b81d0e6f4a2c9957";
const CHILD_ENV: &str = "KUGETSU_HTTPS_TEST_DIR";

#[test]
fn token_over_https_is_used_and_never_stored() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    support::run_child_test(module_path!(), "https_child", |cmd| {
        cmd.env(CHILD_ENV, certs.path())
            .env("SSL_CERT_FILE", certs.path().join("ca.pem"))
            .env_remove("SSL_CERT_DIR");
    });
}

#[test]
#[ignore = "run by token_over_https_is_used_and_never_stored with SSL_CERT_FILE set"]
fn https_child() {
    let Some(certs) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else { return };
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let server = GitHttpServer::start_tls(
        up.parent().unwrap(),
        &fx.home(),
        Some(TOKEN),
        server_config(&certs),
    );

    let mut req = fx.request(&up, "app", 1);
    req.source.url = server.https_url("app");
    match fx.create(&req) {
        Err(WorktreeError::AuthFailed { url }) => assert_eq!(url, server.https_url("app")),
        other => panic!("expected AuthFailed without a token, got {other:?}"),
    }
    req.source.token = Some(Secret::new("wrong-token-value"));
    let err = fx.create(&req).expect_err("wrong token");
    assert!(matches!(err, WorktreeError::AuthFailed { .. }), "{err:?}");
    assert!(!error_text(&err).contains("wrong-token-value"));
    assert!(!fx.mirror("app").exists());

    req.source.token = Some(Secret::new(TOKEN));
    fx.create(&req).expect("clone over https with the token");
    assert_eq!(fx.status(&req.path), "");
    let newer = fx.commit_files(&up, &[("a", "2\n")], "newer");
    let mut second = fx.request(&up, "app", 2);
    second.source = req.source.clone();
    let info = fx.create(&second).expect("fetch over https with the token");
    assert_eq!(info.head.as_deref(), Some(newer.as_str()));
    assert!(server.refused.load(Ordering::SeqCst) >= 2, "the server did demand credentials");

    let seen = support::assert_no_file_contains(&fx.state(), TOKEN);
    assert!(seen > 10, "the state directory was searched");
    let config = std::fs::read_to_string(fx.mirror("app").join("config")).unwrap();
    assert!(config.contains(&server.https_url("app")), "{config}");
}
