//! Watching a tracker through the binary, against the stand-in GitHub of the test support:
//! labelled issues become one `start` each, an idle poll is one 304, a restarted daemon takes
//! nothing twice, a closed issue's pending work is dropped with a notification, and a 403 with
//! `Retry-After` pauses the repository.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use kugetsu_test_support::forge::{Dialect, StandInForge};

use std::io::{Read, Write};
use std::sync::Arc;

use crate::git_http::{make_certificates, server_config};
use crate::support::{Env, json, read, ready, wait_for};

const REPO: &str = "127.0.0.1/o/r";

fn items(env: &Env) -> Vec<serde_json::Value> {
    let v = json(&env.ok(&["--json", "queue", "list"]));
    let list = v.get("items").cloned().unwrap_or(v);
    list.as_array().cloned().unwrap_or_default()
}

fn of_issue(env: &Env, n: u64) -> Vec<serde_json::Value> {
    let issue = format!("{REPO}#{n}");
    items(env).into_iter().filter(|i| i["issue_ref"] == issue.as_str()).collect()
}

fn not_modified(forge: &StandInForge) -> usize {
    forge.idle_polls()
}

/// An https front for `forge` on its own loopback port, with the certificate of the throwaway
/// CA in `certs` (the git tests' https server's): each connection's request is passed on in
/// plain http and the answer back. Returns the front's port.
fn tls_front(forge: &StandInForge, tls: Arc<rustls::ServerConfig>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = forge.base_url().trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (tls, backend) = (tls.clone(), backend.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(tls) else { return };
                let mut client = rustls::StreamOwned::new(conn, stream);
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte) {
                        Ok(1) => request.push(byte[0]),
                        _ => return,
                    }
                }
                let mut upstream = std::net::TcpStream::connect(&backend).unwrap();
                upstream.write_all(&request).unwrap();
                let mut answer = Vec::new();
                let _ = upstream.read_to_end(&mut answer);
                let _ = client.write_all(&answer);
                client.conn.send_close_notify();
                let _ = client.flush();
            });
        }
    });
    port
}

/// A ready home whose repository `127.0.0.1/o/r` is cloned from the sample repository and
/// tracked by `forge`, polled every second.
fn watched(forge: &StandInForge) -> Env {
    watched_at(&forge.base_url(), &forge.api_url())
}

/// Like [`watched`], with the server's base and API URLs given.
fn watched_at(base: &str, api: &str) -> Env {
    let mut env = ready();
    let repos = read(&env.path("repos.json"));
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&repos).unwrap();
    let sample = map["local.test/demo/app"].clone();
    map.insert(REPO.into(), sample);
    std::fs::write(env.path("repos.json"), serde_json::to_string(&map).unwrap()).unwrap();
    env.ok(&["server", "add", "standin", base, "--api", api]);
    env.set("KUGETSU_WATCH_INTERVAL_SECONDS", "1");
    env.set("MAX_CONCURRENT_AGENTS", "1");
    let said = env.ok(&["watch", "add", REPO, "--label", "kugetsu"]);
    assert!(said.contains("watching 127.0.0.1/o/r") && said.contains("github API"), "{said}");
    env
}

#[test]
fn labelled_issues_are_started_once_across_restarts_and_closed_ones_dropped() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Fix the parser", "It breaks on ghp_plantedSECRET99.", &["kugetsu"], false);
    forge.add(2, "A pull request", "", &["kugetsu"], true);
    forge.add(3, "Add a changelog", "", &["kugetsu", "docs"], false);
    forge.add(4, "Not for us", "", &["bug"], false);
    let env = watched(&forge);
    env.ok(&["env", "set", "GITHUB_TOKEN", "ghp_plantedSECRET99"]);

    env.ok(&["queue-daemon", "start"]);
    wait_for("both starts completed", || {
        let done = |n| of_issue(&env, n).iter().any(|i| i["status"] == "completed");
        done(1) && done(3)
    });
    wait_for("an idle poll", || not_modified(&forge) >= 1);
    assert_eq!(items(&env).len(), 2, "one start per labelled open issue: {:?}", items(&env));
    assert!(of_issue(&env, 2).is_empty() && of_issue(&env, 4).is_empty());
    let message = of_issue(&env, 1)[0]["message"].as_str().unwrap().to_string();
    assert!(message.contains("<untrusted-issue>\nFix the parser"), "{message}");
    assert!(!message.contains("ghp_plantedSECRET99"), "masked: {message}");
    // Each poll after the first is one conditional request, answered 304 once the listing
    // stops changing (reporting back on the issues relabels them meanwhile).
    let seen: Vec<_> =
        forge.seen().into_iter().filter(|s| s.target.contains("/issues?labels=")).collect();
    assert_eq!(seen[0].status, 200, "{seen:?}");
    assert!(seen[1..].iter().all(|s| s.if_none_match.is_some()), "{seen:?}");
    assert_eq!(seen.last().unwrap().status, 304, "{seen:?}");

    // A restarted daemon asks with the ETag it kept, and takes nothing again.
    env.ok(&["queue-daemon", "stop"]);
    let before = not_modified(&forge);
    env.ok(&["queue-daemon", "start"]);
    wait_for("the restarted daemon's idle poll", || not_modified(&forge) > before);
    assert_eq!(items(&env).len(), 2);

    // A turn holds the only slot; a continue for issue 1 waits behind it; issue 1 is closed.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "hang"}], "default": {"mode": "ok"}}"#,
    )
    .unwrap();
    env.ok(&["queue", "enqueue", "local.test/demo/app#9", "hold the slot"]);
    wait_for("the holding turn to run", || {
        items(&env)
            .iter()
            .any(|i| i["issue_ref"] == "local.test/demo/app#9" && i["status"] == "notified")
    });
    env.ok(&["queue", "enqueue", &format!("{REPO}#1"), "and the tests too"]);
    forge.close(1);
    wait_for("the continue dropped", || of_issue(&env, 1).iter().any(|i| i["status"] == "error"));
    let dropped: Vec<_> =
        of_issue(&env, 1).into_iter().filter(|i| i["status"] == "error").collect();
    assert_eq!(dropped.len(), 1);
    assert!(dropped[0]["last_error"].as_str().unwrap().contains("closed"), "{:?}", dropped[0]);
    // The notification follows the drop.
    wait_for("the drop's notification", || env.ok(&["notify", "list"]).contains("dropped q_"));
    let notes = env.ok(&["notify", "list"]);
    assert!(notes.contains("127.0.0.1/o/r#1 was closed or lost its label"), "{notes}");

    // A 403 with Retry-After pauses the repository.
    forge.rate_limit_once(3600);
    forge.add(5, "Later", "", &["kugetsu"], false);
    wait_for("the 403", || forge.seen().iter().any(|s| s.status == 403));
    wait_for("the pause recorded", || {
        json(&env.ok(&["--json", "watch", "list"]))[0]["paused_until"].is_string()
    });
    // The next pass asks nothing.
    wait_for("the reports made", || {
        env.ok(&["notify", "outbox"]).lines().all(|l| !l.contains("pending"))
    });
    let requests = forge.seen().len();
    let polled = |env: &Env| json(&env.ok(&["--json", "watch", "list"]))[0]["last_poll"].clone();
    let paused_at = polled(&env);
    wait_for("a pass while paused", || polled(&env) != paused_at);
    env.ok(&["queue-daemon", "stop"]);
    assert_eq!(forge.seen().len(), requests, "no request while paused");
    assert!(of_issue(&env, 5).is_empty(), "nothing taken while paused");
    let log = env.ok(&["queue-daemon", "logs"]);
    assert!(log.contains("paused until"), "{log}");
    for seen in forge.seen() {
        assert_eq!(seen.auth.as_deref(), Some("Bearer ghp_plantedSECRET99"));
    }
    assert!(!log.contains("ghp_plantedSECRET99"));
}

#[test]
fn a_watch_over_https_trusts_the_systems_roots_and_sends_the_token() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Over TLS", "", &["kugetsu"], false);
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let port = tls_front(&forge, server_config(dir.path()));
    let base = format!("https://127.0.0.1:{port}");
    let mut env = watched_at(&base, &base);
    // The system's roots, as rustls-native-certs reads them: here, the throwaway CA alone.
    env.set("SSL_CERT_FILE", dir.path().join("ca.pem").to_str().unwrap());
    env.ok(&["env", "set", "GITHUB_TOKEN", "ghp_overTLS"]);
    env.ok(&["queue-daemon", "start"]);
    wait_for("the start over https", || !of_issue(&env, 1).is_empty());
    wait_for("an idle poll over https", || not_modified(&forge) >= 1);
    env.ok(&["queue-daemon", "stop"]);
    assert_eq!(forge.seen()[0].auth.as_deref(), Some("Bearer ghp_overTLS"));
}

#[test]
fn bad_watches_and_api_urls_are_one_line_errors() {
    let env = Env::new();
    let out = env.run(&["watch", "add", "git.example.org/o/r"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.starts_with("Error: no issue tracker API known for git.example.org/o/r"));
    let out = env.run(&[
        "server",
        "add",
        "tea",
        "https://git.example.org",
        "--api",
        "http://git.example.org/api/v1",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("only on loopback"), "{}", out.stderr);
    let out = env.run(&["watch", "add", "github.com/o/r", "--label", ""]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = env.run(&["watch", "remove", "github.com/o/r"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    env.ok(&["watch", "add", "github.com/o/r"]);
    assert!(env.ok(&["watch", "list"]).contains("github.com/o/r  label \"kugetsu\""));
    env.ok(&["watch", "remove", "github.com/o/r"]);
    assert!(env.ok(&["watch", "list"]).contains("no repositories watched"));
}
