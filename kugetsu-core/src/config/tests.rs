//! The config layers, the settings table and what is made from it.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::shell;

fn no_env(_: &str) -> Option<String> {
    None
}

fn home() -> &'static Path {
    Path::new("/home/u")
}

fn from_file(text: &str) -> Result<Config, ConfigError> {
    Config::resolve(home(), Some((Path::new("/s/config"), text)), &no_env, &[])
}

#[test]
fn resolve_all_goes_past_every_wrong_setting_and_keeps_the_layer_below() {
    let text = "MAX_CONCURRENT_AGENTS=abc\nKUGETSU_VERBOSITY=quiet\nNOPE=1\n";
    let lookup = |k: &str| (k == "QUEUE_CLEANUP_AGE_DAYS").then(|| "-1".to_string());
    let (c, errors) = Config::resolve_all(
        home(),
        Some((Path::new("/s/config"), text)),
        &lookup,
        &[(KUGETSU_AGENT_IDLE_MINUTES, "999")],
    );
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(texts[0].starts_with("/s/config:1: MAX_CONCURRENT_AGENTS=\"abc\""), "{texts:?}");
    assert!(texts[1].starts_with("/s/config:3: unknown setting NOPE"), "{texts:?}");
    assert!(texts[2].starts_with("environment: QUEUE_CLEANUP_AGE_DAYS"), "{texts:?}");
    assert!(texts[3].contains("KUGETSU_AGENT_IDLE_MINUTES"), "{texts:?}");
    assert_eq!(errors[0].key(), Some(MAX_CONCURRENT_AGENTS));
    assert_eq!(c.max_concurrent_agents, 3, "the default stands");
    assert_eq!(c.source(MAX_CONCURRENT_AGENTS), &Source::Default);
    assert_eq!(c.verbosity, Verbosity::Quiet, "good lines still count");
    assert_eq!(c.agent_idle_minutes, c.agent_timeout_minutes);
    // The strict resolution stops at the first.
    let strict = Config::resolve(home(), Some((Path::new("/s/config"), text)), &lookup, &[]);
    assert_eq!(strict.unwrap_err().to_string(), texts[0]);
}

#[test]
fn defaults_match_the_spec() {
    let c = Config::resolve(home(), None, &no_env, &[]).unwrap();
    assert_eq!(c.max_concurrent_agents, 3);
    assert_eq!(c.temp_dir, Path::new("/home/u/.local/share/opencode/tool-output"));
    assert_eq!(c.verbosity, Verbosity::Default);
    assert_eq!(c.queue_daemon_interval(), Duration::from_secs(300));
    assert_eq!(c.queue_cleanup_age_days, 7);
    assert_eq!(c.agent_bin, None);
    assert_eq!(c.default_repo, None);
    assert_eq!(c.run_limits(), crate::agent::RunLimits::default());
    assert!(c.entries().iter().all(|e| e.source == Source::Default));
}

#[test]
fn layers_override_in_order_and_remember_their_source() {
    let text = "# mine\nMAX_CONCURRENT_AGENTS=5\nexport KUGETSU_VERBOSITY=quiet\nKUGETSU_TEMP_DIR=~/tmp\nKUGETSU_DEFAULT_REPO=github.com/o/r\n";
    let env: HashMap<&str, &str> =
        [("KUGETSU_VERBOSITY", "verbose"), ("QUEUE_CLEANUP_AGE_DAYS", "2")].into();
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let c = Config::resolve(
        home(),
        Some((Path::new("/s/config"), text)),
        &lookup,
        &[(KUGETSU_VERBOSITY, "default")],
    )
    .unwrap();
    assert_eq!(c.max_concurrent_agents, 5);
    assert_eq!(
        c.source(MAX_CONCURRENT_AGENTS),
        &Source::File { path: "/s/config".into(), line: 2 }
    );
    assert_eq!(c.temp_dir, Path::new("/home/u/tmp"));
    assert_eq!(c.queue_cleanup_age_days, 2);
    assert_eq!(c.source(QUEUE_CLEANUP_AGE_DAYS), &Source::Env);
    assert_eq!(c.verbosity, Verbosity::Default);
    assert_eq!(c.source(KUGETSU_VERBOSITY), &Source::CommandLine);
    assert_eq!(c.default_repo.unwrap().to_string(), "github.com/o/r");
    assert_eq!(Source::File { path: "/s/config".into(), line: 2 }.to_string(), "/s/config:2");
}

#[test]
fn errors_name_the_file_line_and_value() {
    let err = from_file("\n\n\n\n\n\nMAX_CONCURRENT_AGENTS=\"x\"\n").unwrap_err();
    assert_eq!(err.to_string(), "/s/config:7: MAX_CONCURRENT_AGENTS=\"x\" is not a whole number");
    let err = from_file("MAX_CONCURENT_AGENTS=4\n").unwrap_err();
    assert!(
        err.to_string().starts_with("/s/config:1: unknown setting MAX_CONCURENT_AGENTS"),
        "{err}"
    );
    let err = from_file("A=1 2\n").unwrap_err();
    assert!(err.to_string().starts_with("/s/config:1: unexpected"), "{err}");
    for (text, needle) in [
        ("MAX_CONCURRENT_AGENTS=0", "out of range (1 to 64)"),
        ("MAX_CONCURRENT_AGENTS=-1", "not a whole number"),
        ("KUGETSU_VERBOSITY=loud", "not one of verbose, default, quiet"),
        ("KUGETSU_TEMP_DIR=rel/dir", "not an absolute path"),
        ("KUGETSU_DEFAULT_REPO=github.com/o", "is not a repository"),
        ("KUGETSU_AGENT_BIN=", "is empty"),
        ("KUGETSU_OPENCODE_BIN= ", "is empty"),
        ("KUGETSU_AGENT=OpenCode", "is not a driver name"),
        ("KUGETSU_AGENT_IDLE_MINUTES=90", "longer than KUGETSU_AGENT_TIMEOUT_MINUTES"),
    ] {
        let err = from_file(text).expect_err(text).to_string();
        assert!(err.contains(needle), "{text}: {err}");
        assert!(err.starts_with("/s/config:1: "), "{text}: {err}");
    }
    let env = |k: &str| (k == MAX_CONCURRENT_AGENTS).then(|| "many".to_string());
    let err = Config::resolve(home(), None, &env, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment: MAX_CONCURRENT_AGENTS=\"many\" is not a whole number"
    );
    let err = Config::resolve(home(), None, &no_env, &[("NOPE", "1")]).unwrap_err();
    assert!(err.to_string().starts_with("command line: unknown setting NOPE"), "{err}");
}

#[test]
fn obsolete_keys_warn_instead_of_failing() {
    let c = from_file("QUEUE_DAEMON_BATCH_SIZE=2\n").unwrap();
    assert_eq!(c.warnings().len(), 1);
    assert!(c.warnings()[0].contains("QUEUE_DAEMON_BATCH_SIZE is no longer used"));
}

#[test]
fn the_default_file_parses_to_the_defaults_and_every_line_uncomments() {
    let text = default_config_text();
    assert!(text.starts_with("# User configuration overrides\n"));
    assert!(text.contains("# Max concurrent dev agents (default: 3)\n# MAX_CONCURRENT_AGENTS=5\n"));
    let c = from_file(&text).unwrap();
    assert_eq!(c, Config { sources: c.sources.clone(), ..Config::defaults(home()) });
    let uncommented: String = text
        .lines()
        .map(|l| l.strip_prefix("# ").filter(|l| l.contains('=')).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let c = from_file(&uncommented).unwrap();
    assert_eq!(c.max_concurrent_agents, 5);
    assert!(c.entries().iter().all(|e| matches!(e.source, Source::File { .. })));
}

#[test]
fn load_reads_the_state_dir_file_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("k"));
    state.ensure().unwrap();
    let c = Config::load(&state, home(), &no_env, &[]).unwrap();
    assert_eq!(c.max_concurrent_agents, 3);
    assert!(write_default_config(&state).unwrap());
    std::fs::write(state.config_path(), "MAX_CONCURRENT_AGENTS=2\n").unwrap();
    assert!(!write_default_config(&state).unwrap());
    let c = Config::load(&state, home(), &no_env, &[]).unwrap();
    assert_eq!(c.max_concurrent_agents, 2);
    std::fs::write(state.config_path(), b"A=1\nB=\xff\n").unwrap();
    let err = Config::load(&state, home(), &no_env, &[]).unwrap_err();
    assert!(err.to_string().ends_with("config: not UTF-8 text (line 2)"), "{err}");
}

#[test]
fn the_old_name_of_the_agent_program_is_read_everywhere_and_the_new_one_wins() {
    let c = from_file("KUGETSU_OPENCODE_BIN=/opt/oc\n").unwrap();
    assert_eq!(c.agent_bin, Some(PathBuf::from("/opt/oc")));
    assert_eq!(c.source(KUGETSU_AGENT_BIN), &Source::File { path: "/s/config".into(), line: 1 });
    assert_eq!(c.source(KUGETSU_OPENCODE_BIN), c.source(KUGETSU_AGENT_BIN));
    let env: HashMap<&str, &str> =
        [(KUGETSU_OPENCODE_BIN, "/old"), (KUGETSU_AGENT_BIN, "/new")].into();
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let c = Config::resolve(home(), None, &lookup, &[]).unwrap();
    assert_eq!(c.agent_bin, Some(PathBuf::from("/new")), "the new name wins in one layer");
    let c = Config::resolve(home(), None, &lookup, &[(KUGETSU_OPENCODE_BIN, "/flag")]).unwrap();
    assert_eq!(c.agent_bin, Some(PathBuf::from("/flag")), "a higher layer wins by either name");
    assert_eq!(c.source(KUGETSU_AGENT_BIN), &Source::CommandLine);
    let err = from_file("KUGETSU_OPENCODE_BIN=\n").unwrap_err();
    assert_eq!(err.key(), Some(KUGETSU_OPENCODE_BIN), "the error names the key as written");
    // Listed once, under its name.
    let entries = c.entries();
    assert_eq!(entries.iter().filter(|e| e.key == KUGETSU_AGENT_BIN).count(), 1);
    assert!(entries.iter().all(|e| e.key != KUGETSU_OPENCODE_BIN));
    assert!(is_key(KUGETSU_OPENCODE_BIN) && is_key(KUGETSU_AGENT_BIN) && !is_key("OPENCODE_BIN"));
}

#[test]
fn every_default_parses_and_shows_as_the_table_says() {
    let c = Config::defaults(home());
    for (setting, entry) in SETTINGS.iter().zip(c.entries()) {
        assert_eq!(entry.key, setting.name);
        match setting.default {
            DefaultValue::Is(value) => {
                let mut again = c.clone();
                assert_eq!((setting.parse)(&mut again, &entry.value), Ok(()), "{}", setting.name);
                assert_eq!(again, c, "{} reads back what it shows", setting.name);
                if !value.starts_with("~/") {
                    assert_eq!(entry.value, value, "{}", setting.name);
                }
            }
            DefaultValue::Unset(_) => assert!(entry.value.starts_with('('), "{}", setting.name),
        }
    }
    let names: Vec<&str> =
        SETTINGS.iter().flat_map(|s| s.aliases.iter().chain([&s.name])).copied().collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a name or alias is used twice: {names:?}");
}

/// README.md's settings table is the table: a row missing, added or different fails here.
#[test]
fn the_readme_settings_table_is_the_settings_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find("| key | default | meaning |").expect("README.md has a settings table");
    let table: String = readme[start..]
        .lines()
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    let expected = readme_table();
    for (line, (found, wanted)) in table.lines().zip(expected.lines()).enumerate() {
        assert_eq!(found, wanted, "README.md's settings table, row {line}");
    }
    assert_eq!(
        table, expected,
        "README.md's settings table has rows the table has not, or lacks some"
    );
}

proptest! {
    #[test]
    fn resolve_never_panics(text in "\\PC{0,300}") {
        let _ = from_file(&text);
    }

    #[test]
    fn generated_values_round_trip(
        agents in 1usize..=64,
        dir in "/[^\u{0}]{0,40}",
        bin in "[^\u{0}]{1,40}",
        verbosity in prop::sample::select(vec!["verbose", "default", "quiet"]),
        interval in 1u64..=MAX_MINUTES,
        cleanup in 0u64..=MAX_CLEANUP_DAYS,
        (timeout, idle) in (1u64..=MAX_MINUTES).prop_flat_map(|t| (Just(t), 1..=t)),
        repo in "[a-z]{1,10}\\.org/[A-Za-z0-9_-]{1,10}/[A-Za-z0-9_-]{1,10}",
        export in any::<bool>(),
    ) {
        prop_assume!(!bin.trim().is_empty());
        let values = [
            (MAX_CONCURRENT_AGENTS, agents.to_string()),
            (KUGETSU_TEMP_DIR, dir.clone()),
            (KUGETSU_AGENT_BIN, bin.clone()),
            (KUGETSU_VERBOSITY, verbosity.to_string()),
            (QUEUE_DAEMON_INTERVAL_MINUTES, interval.to_string()),
            (QUEUE_CLEANUP_AGE_DAYS, cleanup.to_string()),
            (KUGETSU_AGENT_TIMEOUT_MINUTES, timeout.to_string()),
            (KUGETSU_AGENT_IDLE_MINUTES, idle.to_string()),
            (KUGETSU_DEFAULT_REPO, repo.clone()),
        ];
        let prefix = if export { "export " } else { "" };
        let text: String =
            values.iter().map(|(k, v)| format!("{prefix}{k}={}\n", shell::quote(v))).collect();
        let c = from_file(&text).unwrap();
        prop_assert_eq!(c.max_concurrent_agents, agents);
        prop_assert_eq!(&c.temp_dir, &PathBuf::from(&dir));
        prop_assert_eq!(&c.agent_bin, &Some(PathBuf::from(&bin)));
        prop_assert_eq!(c.verbosity.as_str(), verbosity);
        prop_assert_eq!(c.queue_daemon_interval_minutes, interval);
        prop_assert_eq!(c.queue_cleanup_age_days, cleanup);
        prop_assert_eq!((c.agent_timeout_minutes, c.agent_idle_minutes), (timeout, idle));
        prop_assert_eq!(c.default_repo.as_ref().map(ToString::to_string), Some(repo.clone()));
        // The same values through the environment and the command line resolve the same.
        let env = |k: &str| values.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
        let from_env = Config::resolve(home(), None, &env, &[]).unwrap();
        prop_assert_eq!(from_env.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
            c.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>());
        let flags: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let from_flags = Config::resolve(home(), None, &no_env, &flags).unwrap();
        prop_assert_eq!(from_flags.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
            c.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>());
    }
}

#[test]
fn a_secret_setting_is_masked_wherever_masking_applies() {
    // Masking (agent output, env listings, notifications) goes by the key's name: a setting
    // the table calls secret must be one of those names.
    for s in super::settings::SETTINGS.iter().filter(|s| s.secret) {
        assert!(crate::secrets::is_sensitive(s.name), "{}", s.name);
    }
    let url = "postgres://k:pa%2Fss%3F%23%40@db/q";
    let mut config = Config::defaults(home());
    (super::settings::setting(KUGETSU_QUEUE_URL).unwrap().parse)(&mut config, url).unwrap();
    let shown = (super::settings::setting(KUGETSU_QUEUE_URL).unwrap().display)(&config);
    assert_eq!(shown, "postgres://***@db/q");
    let urls = "https://hooks.example/services/T0/B0/XXXXsecret, http://u:pw99@127.0.0.1:9/h";
    (super::settings::setting(KUGETSU_NOTIFY_URL).unwrap().parse)(&mut config, urls).unwrap();
    assert_eq!(config.notify_urls.len(), 2);
    let shown = (super::settings::setting(KUGETSU_NOTIFY_URL).unwrap().display)(&config);
    assert_eq!(shown, "https://hooks.example/***, http://***@127.0.0.1:9/***");
    // A bad value is reported without the token.
    let err = Config::resolve(
        home(),
        None,
        &|_| None,
        &[(KUGETSU_NOTIFY_URL, "https://ok.example/tok1, ftp://x/XXXXsecret")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("entry (2)") && !err.contains("XXXXsecret") && !err.contains("tok1"),
        "{err}"
    );
    assert!(
        crate::secrets::secret_values([(KUGETSU_NOTIFY_URL, urls)])
            .contains(&"XXXXsecret".to_string())
    );
}
