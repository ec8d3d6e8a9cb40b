//! A token's whole way through the binary: from an env file, over https with a certificate from
//! a throwaway CA, to a server that demands it; sent only once that server is one the user
//! added, and never in any output (with `--debug`) or any file kugetsu writes.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::{git_http, support};

use git_http::{GitHttpServer, make_certificates, server_config};
use support::Env;

const TOKEN: &str = "kgs-https-canary-61c2f0a9";

#[test]
fn an_https_token_goes_only_to_an_added_server_and_is_shown_nowhere() {
    let (mut env, repo) = Env::with_fake_agent();
    let certs = env.tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certificates(&certs);
    env.set("SSL_CERT_FILE", certs.join("ca.pem").to_str().unwrap());
    let git_home = env.tmp.path().join("git-home");
    std::fs::create_dir_all(&git_home).unwrap();
    let server = GitHttpServer::start_tls(
        repo.parent().unwrap(),
        &git_home,
        Some(TOKEN),
        server_config(&certs),
    );
    let url = server.https_url("repo");
    let base = url.trim_end_matches("/repo").to_string();
    std::fs::write(env.path("repos.json"), format!("{{\"local.test/demo/app\": \"{url}\"}}\n"))
        .unwrap();

    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let out = env.run(args);
        outputs.push((args.join(" "), format!("{}{}", out.stdout, out.stderr)));
        out
    };
    assert_eq!(run(&["env", "set", "GITEA_TOKEN", TOKEN]).code, 0);
    assert_eq!(run(&["--debug", "init", "--headless"]).code, 0);

    // 127.0.0.1 is nobody's server yet: no token leaves, and the error says what to do.
    let out = run(&["--debug", "start", "#5", "go"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&format!("authentication failed for {url}")), "{}", out.stderr);
    assert!(out.stderr.contains("kugetsu server add"), "{}", out.stderr);
    let refused = server.refused.load(std::sync::atomic::Ordering::SeqCst);
    assert!(refused >= 1, "the server demanded credentials");

    assert_eq!(run(&["server", "add", "gitea", &base]).code, 0);
    let out = run(&["--debug", "start", "#5", "go"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let wt = env.path("worktrees/local.test-demo-app-5");
    assert_eq!(std::fs::read_to_string(wt.join("README.md")).unwrap(), "# demo\n");
    let out = run(&["--debug", "continue", "#5", "more"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for args in [
        &["--debug", "logs", "100"][..],
        &["list", "--json"],
        &["--debug", "doctor"],
        &["env", "show"],
        &["notify", "list", "--all"],
    ] {
        // A command that failed early would print nothing to leak: each must do its work.
        let out = run(args);
        assert_eq!(
            out.code,
            0,
            "`kugetsu {}` failed: {}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
    }

    for (cmd, text) in &outputs {
        assert!(!text.contains(TOKEN), "`kugetsu {cmd}` printed the token:\n{text}");
    }
    let mut searched = 0;
    for path in env.all_files() {
        if path.is_file() && path.starts_with(&env.state) && !path.starts_with(env.path("env")) {
            searched += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(TOKEN),
                "{} holds the token",
                path.display()
            );
        }
    }
    assert!(searched > 20, "the state directory was searched ({searched} files)");
}
