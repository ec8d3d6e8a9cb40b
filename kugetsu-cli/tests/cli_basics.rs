//! The command line as a new user meets it: help, status words, bad input, confirmation rules,
//! env files. Each snapshot pins stdout, stderr and the exit status together.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use insta::assert_snapshot;
use support::Env;

#[test]
fn status_before_init() {
    let env = Env::new();
    let out = env.run(&["status"]);
    assert_snapshot!(out.snapshot(&env));
    let out = env.run(&["status", "--json"]);
    assert_snapshot!("status_before_init_json", out.snapshot(&env));
}

#[test]
fn list_before_init_explains_what_to_do() {
    let env = Env::new();
    assert_snapshot!(env.run(&["list"]).snapshot(&env));
}

#[test]
fn hostile_refs_are_rejected_and_create_nothing() {
    let env = Env::new();
    for r in [
        "github.com/../../etc#1",
        "/etc/passwd#1",
        "github.com/o/r#1/../../x",
        "github.com/o/\u{440}epo#1",
        "#14",
    ] {
        let out = env.run(&["start", r, "hello"]);
        assert_eq!(out.code, 2, "{r}: {}", out.stderr);
        assert!(out.stderr.starts_with("Error: "), "{r}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{r}");
    }
    let long = format!("github.com/o/{}#1", "r".repeat(300));
    let out = env.run(&["start", &long, "hello"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_snapshot!(env.run(&["start", "github.com/../../etc#1", "x"]).snapshot(&env));
    // The shell's directory is the test's own fixture.
    let elsewhere = env.elsewhere();
    let outside: Vec<_> = env
        .all_files()
        .into_iter()
        .filter(|p| !p.starts_with(&env.state) && !p.starts_with(&elsewhere))
        .collect();
    assert_eq!(
        outside,
        std::slice::from_ref(&env.home),
        "nothing created outside the state directory"
    );
    assert_eq!(support::git(&elsewhere, &["status", "--porcelain"]), "", "nor where it was run");
}

#[test]
fn destroy_without_a_terminal_needs_yes() {
    let env = Env::new();
    assert_snapshot!(env.run(&["destroy", "github.com/o/r#1"]).snapshot(&env));
}

#[test]
fn destroy_needs_a_target() {
    let env = Env::new();
    let out = env.run(&["destroy"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("required"), "{}", out.stderr);
}

#[test]
fn env_files_are_private_and_tokens_masked() {
    let env = Env::new();
    let out = env.run(&["env", "set", "GITHUB_TOKEN", "canary-secret-123", "pm-agent"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = env.run(&["env", "set", "EDITOR", "vim"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = env.path("env/pm-agent.env");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let show = env.run(&["env", "show", "pm-agent"]);
    assert_snapshot!(show.snapshot(&env));
    for args in [
        &["env", "show", "pm-agent"][..],
        &["env", "get", "GITHUB_TOKEN", "pm-agent"],
        &["env", "list"],
        &["env", "list", "--json"],
        &["--debug", "env", "show", "pm-agent", "--json"],
    ] {
        let out = env.run(args);
        // A command that failed early would print nothing to leak: each must do its work.
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(
            !out.stdout.contains("canary-secret-123") && !out.stderr.contains("canary-secret-123"),
            "{args:?} leaked the token"
        );
    }
    let reveal = env.run(&["env", "get", "GITHUB_TOKEN", "pm-agent", "--reveal"]);
    assert_eq!(reveal.stdout, "canary-secret-123\n");
    assert_eq!(env.run(&["env", "get", "EDITOR"]).stdout, "vim\n");
}

#[test]
fn bad_config_is_reported_with_its_line() {
    let env = Env::new();
    std::fs::create_dir_all(&env.state).unwrap();
    std::fs::set_permissions(&env.state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    std::fs::write(
        env.path("config"),
        "# mine\nMAX_CONCURRENT_AGENTS=lots\nKUGETSU_VERBOSITY=quiet\n",
    )
    .unwrap();
    assert_snapshot!(env.run(&["status"]).snapshot(&env));
    // The hint's promise: doctor works on the broken config, shows every setting, its value
    // and source, and marks the wrong line under its key.
    let doctor = env.run(&["doctor"]);
    assert_snapshot!("doctor_on_a_bad_config", doctor.snapshot(&env));
    assert_eq!(doctor.code, 1);
    assert!(doctor.stdout.contains("KUGETSU_VERBOSITY              quiet"), "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains("^ ignored, wrong: [TMP]/home/.kugetsu/config:2")
            || env
                .redact(&doctor.stdout)
                .contains("^ ignored, wrong: [TMP]/home/.kugetsu/config:2"),
        "{}",
        doctor.stdout
    );
}

#[test]
fn a_state_dir_others_can_write_is_refused() {
    let env = Env::new();
    std::fs::create_dir_all(&env.state).unwrap();
    std::fs::set_permissions(&env.state, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .unwrap();
    let out = env.run(&["status"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("lets others write"), "{}", out.stderr);
}

#[test]
fn help_lists_every_spec_command() {
    let env = Env::new();
    let out = env.run(&["--help"]);
    assert_eq!(out.code, 0);
    for cmd in [
        "init",
        "start",
        "continue",
        "list",
        "prune",
        "destroy",
        "delegate",
        "logs",
        "status",
        "doctor",
        "notify",
        "server",
        "queue",
        "queue-daemon",
        "env",
        "completions",
        "demo",
    ] {
        assert!(out.stdout.contains(&format!("\n  {cmd} ")), "{cmd} missing from --help");
    }
}

#[test]
fn completions_are_generated() {
    let env = Env::new();
    let out = env.run(&["completions", "bash"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("queue-daemon"));
}
