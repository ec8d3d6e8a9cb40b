//! Snapshots of every command's human and `--json` output along a whole session of use, in a
//! hermetic environment with the fake agent. Ids, times, pids and scratch paths are redacted,
//! so each snapshot pins exactly what a user or a script sees.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use support::Env;

fn snap(env: &Env, name: &str, args: &[&str]) {
    let out = env.run(args);
    let text = format!("$ kugetsu {}\n{}", args.join(" "), out.snapshot(env));
    insta::with_settings!({
        filters => vec![
            (r"ses_[0-9a-zA-Z]{26}", "[SES]"),
            (r"q_\d{20}", "[QID]"),
            (r"n_\d+", "[NID]"),
            (r"\d{8}T\d{6}Z", "[TS]"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", "[TIME]"),
            (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "[TIME]"),
            (r"pid \d+", "pid [PID]"),
            (r#""pid": \d+"#, r#""pid": [PID]"#),
        ],
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn a_whole_session_of_use() {
    let (env, _repo) = Env::with_fake_agent();
    snap(&env, "01_init", &["init", "--headless"]);
    snap(&env, "02_init_again", &["init", "--headless"]);
    snap(&env, "03_status", &["status"]);
    snap(&env, "04_start", &["start", "#14", "fix the bug"]);
    snap(&env, "05_list", &["list"]);
    snap(&env, "06_list_json", &["list", "--json"]);
    snap(&env, "07_continue_json", &["continue", "local.test/demo/app#14", "add tests", "--json"]);
    snap(&env, "08_continue_unknown", &["continue", "local.test/demo/app#99", "x"]);
    snap(&env, "09_enqueue", &["queue", "enqueue", "#15", "look at this"]);
    snap(&env, "10_delegate", &["delegate", "what next?"]);
    snap(&env, "11_queue_list", &["queue", "list"]);
    snap(&env, "12_queue_stats", &["queue", "stats"]);
    snap(&env, "13_queue_stats_json", &["queue", "stats", "--json"]);
    snap(&env, "14_notify", &["notify", "list"]);
    snap(&env, "15_notify_clear", &["notify", "clear"]);
    snap(&env, "16_notify_after_clear", &["notify"]);
    snap(&env, "17_server_add", &["server", "add", "github", "https://github.com"]);
    snap(
        &env,
        "18_server_add_with_password",
        &["server", "add", "evil", "https://u:secret@example.com"],
    );
    snap(&env, "19_server_default", &["server", "default", "github"]);
    snap(&env, "20_server_list", &["server", "list"]);
    snap(&env, "21_server_get_json", &["server", "get", "github", "--json"]);
    snap(&env, "22_server_remove_unknown", &["server", "remove", "nope"]);
    snap(&env, "23_env_list", &["env", "list"]);
    snap(&env, "24_daemon_status", &["queue-daemon", "status"]);
    snap(&env, "25_doctor", &["doctor"]);
    snap(&env, "26_prune", &["prune"]);
    snap(&env, "27_destroy_dirty", &["destroy", "#14", "-y"]);
    snap(&env, "28_destroy_force_json", &["destroy", "#14", "-y", "--force", "--json"]);
    snap(&env, "29_destroy_pm", &["destroy", "--pm-agent", "-y"]);
    snap(&env, "30_status_pm_missing", &["status"]);
    snap(&env, "31_start_pm_missing", &["start", "#16", "x"]);
}
