//! The shared queue on a PostgreSQL that accepts only TLS, as a managed one does, through the
//! binary: `verify-full` with the server's CA works, and each refusal is one `Error:` line
//! that says why and a non-zero exit.
#![allow(clippy::unwrap_used)]

use crate::{pg, support};

use support::{Env, json};

/// `kugetsu queue` ARGS against the queue at `url`.
fn queue(env: &Env, url: &str, args: &[&str]) -> support::Output {
    let config = format!("KUGETSU_QUEUE_URL={url}");
    let mut argv = vec!["--config", config.as_str(), "queue"];
    argv.extend_from_slice(args);
    env.run(&argv)
}

/// The one line `kugetsu queue list` says when it cannot connect through `url`.
fn refused(env: &Env, url: &str) -> String {
    let out = queue(env, url, &["list"]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "one line: {}", out.stderr);
    let first = out.stderr.trim_end().to_string();
    assert!(first.starts_with("Error: "), "{}", out.stderr);
    assert!(!out.stderr.contains("s3cretpw"), "the password is masked: {}", out.stderr);
    first
}

#[test]
fn a_tls_only_server_through_the_binary() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let tls = pg.require_tls();
    let env = Env::new();

    let verified = format!("{url}?sslmode=verify-full&sslrootcert={}", tls.ca.display());
    let out = queue(&env, &verified, &["enqueue", "github.com/o/r#5", "add a file"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let listed = queue(&env, &verified, &["--json", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(json(&listed.stdout)["items"].as_array().unwrap().len(), 1, "{}", listed.stdout);

    let line =
        refused(&env, &format!("{url}?sslmode=verify-full&sslrootcert={}", tls.other_ca.display()));
    assert!(
        line.contains("the server's certificate is not signed by the CA in sslrootcert"),
        "{line}"
    );
    let line = refused(
        &env,
        &format!(
            "{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            url.replace("127.0.0.1", "db.invalid"),
            tls.ca.display()
        ),
    );
    assert!(line.contains("the server's certificate does not name the host"), "{line}");
    let line = refused(&env, &format!("{url}?sslmode=disable"));
    assert!(line.contains("the server refuses unencrypted connections"), "{line}");
}
