//! The token over https: used for clone and fetch, never stored or shown.
//!
//! The server is the smart-HTTP test server behind rustls with a certificate from a throwaway
//! CA. gix's https client trusts the system roots, which `SSL_CERT_FILE` replaces; since the
//! environment of a running test must not be changed (other tests run in parallel threads), the
//! test re-runs its own binary with `SSL_CERT_FILE` pointing at the throwaway CA.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::sync::atomic::Ordering;

use kugetsu_core::worktree::{Secret, WorktreeError};
use support::error_text;

const TOKEN: &str = "kgs_tok_b81d0e6f4a2c9957";

#[test]
fn token_over_https_is_used_and_never_stored() {
    support::run_child_trusting_test_ca(module_path!(), "https_child");
}

#[test]
#[ignore = "run by token_over_https_is_used_and_never_stored with SSL_CERT_FILE set"]
fn https_child() {
    let Some((fx, up, server)) = support::https_upstream(Some(TOKEN)) else { return };

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
