//! The settings table: every key kugetsu reads, each defined once, in one row of [`SETTINGS`]
//! (name, older names, default, documentation, parser, display). Resolving, `doctor`'s listing,
//! the `config` file template and README.md's table are all made from it.

use std::fmt;
use std::path::PathBuf;

use super::Config;
use crate::issue_ref::RepoRef;

/// Maximum number of agents running at once (default 3).
pub const MAX_CONCURRENT_AGENTS: &str = "MAX_CONCURRENT_AGENTS";
/// Directory for subagent tool output (default `~/.local/share/opencode/tool-output`).
pub const KUGETSU_TEMP_DIR: &str = "KUGETSU_TEMP_DIR";
/// PM agent verbosity: `verbose`, `default` or `quiet`.
pub const KUGETSU_VERBOSITY: &str = "KUGETSU_VERBOSITY";
/// How often the queue daemon polls, in minutes (default 5).
pub const QUEUE_DAEMON_INTERVAL_MINUTES: &str = "QUEUE_DAEMON_INTERVAL_MINUTES";
/// How often the queue daemon polls each watched tracker, in seconds (default 60).
pub const KUGETSU_WATCH_INTERVAL_SECONDS: &str = "KUGETSU_WATCH_INTERVAL_SECONDS";
/// Completed and error queue items older than this many days are cleaned up (default 7).
pub const QUEUE_CLEANUP_AGE_DAYS: &str = "QUEUE_CLEANUP_AGE_DAYS";
/// Which agent driver runs the sessions (default [`DEFAULT_DRIVER`]; the caller maps the name to
/// a driver and refuses names it does not know).
pub const KUGETSU_AGENT: &str = "KUGETSU_AGENT";
/// The agent program to run (default: the driver's own, looked up in `PATH` by the caller).
pub const KUGETSU_AGENT_BIN: &str = "KUGETSU_AGENT_BIN";
/// The original kugetsu's name of [`KUGETSU_AGENT_BIN`], from when opencode was the only agent;
/// still read, in the `config` file, the environment and flags alike.
pub const KUGETSU_OPENCODE_BIN: &str = "KUGETSU_OPENCODE_BIN";
/// The repository short refs like `#14` belong to (`instance/owner/repo`; default none).
pub const KUGETSU_DEFAULT_REPO: &str = "KUGETSU_DEFAULT_REPO";
/// An agent run is killed after this many minutes (default 60).
pub const KUGETSU_AGENT_TIMEOUT_MINUTES: &str = "KUGETSU_AGENT_TIMEOUT_MINUTES";
/// An agent run that prints nothing and whose processes use no CPU or I/O for this many minutes
/// is killed as hung (default 15).
pub const KUGETSU_AGENT_IDLE_MINUTES: &str = "KUGETSU_AGENT_IDLE_MINUTES";
/// A PostgreSQL URL (`postgres://user:password@host/db`) that puts the queue, the agent slots
/// and the daemons' leases on a database shared by several hosts (default none: the state
/// directory's files). Shown with its credentials masked.
pub const KUGETSU_QUEUE_URL: &str = "KUGETSU_QUEUE_URL";
/// With a shared queue, the most agents running at once across every host (default none:
/// only each host's `MAX_CONCURRENT_AGENTS`).
pub const KUGETSU_GLOBAL_MAX_AGENTS: &str = "KUGETSU_GLOBAL_MAX_AGENTS";
/// With a shared queue, how long a daemon's claim on an item (and a slot) lasts without a
/// heartbeat, in seconds (default 30): how soon a dead host's work runs elsewhere.
pub const KUGETSU_QUEUE_LEASE_SECONDS: &str = "KUGETSU_QUEUE_LEASE_SECONDS";
/// With a shared queue, how long a host's daemon may be silent (its leases expired) before the
/// host counts as lost and the issues waiting for it move to other hosts, in seconds
/// (default 300).
pub const KUGETSU_HOST_LOST_SECONDS: &str = "KUGETSU_HOST_LOST_SECONDS";
/// With a shared queue, the most megabytes each part of an issue's history (its agent
/// session's export, its worktree's unsaved work) saved for other hosts may take (default 50).
pub const KUGETSU_MOVE_MAX_MB: &str = "KUGETSU_MOVE_MAX_MB";
/// Whether the agent is kept warm for forks: `daemon` (default: the queue daemon keeps it warm
/// while it runs, and every `start` forks through it when it is) or `off`.
pub const KUGETSU_WARM_AGENT: &str = "KUGETSU_WARM_AGENT";
/// When more than 0: a foreground `start` that finds the agent not kept warm leaves it warm for
/// the next `start`, until this many minutes pass without a fork (default 0: only the daemon
/// keeps it warm).
pub const KUGETSU_WARM_AGENT_IDLE_MINUTES: &str = "KUGETSU_WARM_AGENT_IDLE_MINUTES";
/// What one issue's turns may cost in all, in US dollars (default none): a turn reaching it is
/// stopped at its next step, and no further turn of the issue starts.
pub const KUGETSU_ISSUE_BUDGET_USD: &str = "KUGETSU_ISSUE_BUDGET_USD";
/// What this host's turns may cost in one UTC day, in US dollars (default none).
pub const KUGETSU_DAILY_BUDGET_USD: &str = "KUGETSU_DAILY_BUDGET_USD";

/// One or more `http://`/`https://` URLs (separated by commas or whitespace) every notification
/// worth a person's attention is POSTed to as JSON (default none). A secret: such a URL often
/// holds its token (in its path, its query or its user-info), so it is shown masked.
pub const KUGETSU_NOTIFY_URL: &str = "KUGETSU_NOTIFY_URL";
/// `1`: a completed task is posted to [`KUGETSU_NOTIFY_URL`] too (default `0`: only what needs
/// a person).
pub const KUGETSU_NOTIFY_COMPLETED: &str = "KUGETSU_NOTIFY_COMPLETED";
/// The labels a watched issue gets while a turn runs, when it ended needing a person, and when
/// it completed: three names separated by commas (default
/// `kugetsu:running,kugetsu:blocked,kugetsu:done`), or `off`.
pub const KUGETSU_REPORT_LABELS: &str = "KUGETSU_REPORT_LABELS";
/// After a completed turn of a watched issue with commits: `draft` (default) pushes its branch
/// and opens (then updates) a draft pull request; `off` does neither.
pub const KUGETSU_PULL_REQUESTS: &str = "KUGETSU_PULL_REQUESTS";
/// While pull requests are on: `1` (default) commits what a completed turn left uncommitted in
/// the worktree before the push; `0` pushes only the agent's own commits.
pub const KUGETSU_COMMIT_LEFTOVERS: &str = "KUGETSU_COMMIT_LEFTOVERS";
/// The most `continue`s the loop queues per watched issue for failed checks and reviews
/// requesting changes (default 3; 0: no loop).
pub const KUGETSU_LOOP_ROUNDS: &str = "KUGETSU_LOOP_ROUNDS";

/// The driver `KUGETSU_AGENT` names by default, and the one that made a session file that
/// names none (the original kugetsu knew only opencode).
pub const DEFAULT_DRIVER: &str = "opencode";

/// Keys the original kugetsu had and then dropped; accepted with a warning so an old `config`
/// keeps working.
pub const OBSOLETE_KEYS: &[&str] = &["QUEUE_DAEMON_BATCH_SIZE"];

/// Largest `MAX_CONCURRENT_AGENTS` accepted.
pub const MAX_AGENTS_LIMIT: usize = 64;
/// Largest `KUGETSU_GLOBAL_MAX_AGENTS` accepted.
pub const MAX_GLOBAL_AGENTS: usize = 4096;
/// Longest interval or timeout accepted, in minutes (one week).
pub const MAX_MINUTES: u64 = 7 * 24 * 60;
/// Largest `QUEUE_CLEANUP_AGE_DAYS` accepted (ten years).
pub const MAX_CLEANUP_DAYS: u64 = 3650;

/// A setting's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, as it would be written in `config` (a leading `~/` is the home directory).
    Is(&'static str),
    /// Unset, which means this (in words).
    Unset(&'static str),
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Is(value) | DefaultValue::Unset(value) => f.write_str(value),
        }
    }
}

/// One setting. Everything kugetsu knows about a key is here.
#[derive(Clone, Copy)]
pub struct Setting {
    /// The key, as written in `config`, the environment and `--config`.
    pub name: &'static str,
    /// Older names of the same setting, still read wherever the name is.
    pub aliases: &'static [&'static str],
    /// Its default.
    pub default: DefaultValue,
    /// What it does, in one line (the `config` template's comment).
    pub summary: &'static str,
    /// What it does, as README.md's settings table says it.
    pub doc: &'static str,
    /// The value the `config` template shows, when the default makes a poor example.
    pub example: Option<&'static str>,
    /// A secret (it may hold a password): never shown or echoed whole.
    pub secret: bool,
    /// Reads a value into the config, or says what is wrong with it ("is not a whole number").
    pub parse: fn(&mut Config, &str) -> Result<(), String>,
    /// The value as `doctor` shows it.
    pub display: fn(&Config) -> String,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setting").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Setting {
    /// Whether `key` names this setting (by its name or an older one).
    pub fn is_named(&self, key: &str) -> bool {
        self.name == key || self.aliases.contains(&key)
    }

    /// Its row of README.md's settings table: numbers bare, words as code.
    pub fn readme_row(&self) -> String {
        let default = match self.default {
            DefaultValue::Is(v) if v.bytes().all(|b| b.is_ascii_digit()) => v.to_string(),
            DefaultValue::Is(v) => format!("`{v}`"),
            DefaultValue::Unset(words) => words.to_string(),
        };
        format!("| `{}` | {default} | {} |", self.name, self.doc)
    }
}

/// The setting `key` names, by its name or an older one.
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.is_named(key))
}

/// Whether `key` is a setting (by its name or an older one).
pub fn is_key(key: &str) -> bool {
    setting(key).is_some()
}

/// Every setting, in the order `doctor`, the `config` template and README.md show them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: MAX_CONCURRENT_AGENTS,
        aliases: &[],
        default: DefaultValue::Is("3"),
        summary: "Max concurrent dev agents",
        doc: "dev agents running at once (the PM agent does not count)",
        example: Some("5"),
        secret: false,
        parse: |c, v| {
            c.max_concurrent_agents = number(v, 1, MAX_AGENTS_LIMIT as u64)? as usize;
            Ok(())
        },
        display: |c| c.max_concurrent_agents.to_string(),
    },
    Setting {
        name: KUGETSU_TEMP_DIR,
        aliases: &[],
        default: DefaultValue::Is("~/.local/share/opencode/tool-output"),
        summary: "Temp directory for subagent tool output (useful where /tmp is restricted)",
        doc: "temp dir for agent tool output",
        example: None,
        secret: false,
        parse: |c, v| {
            let path = PathBuf::from(v);
            if v.is_empty() || !path.is_absolute() {
                return Err("is not an absolute path".into());
            }
            c.temp_dir = path;
            Ok(())
        },
        display: |c| c.temp_dir.display().to_string(),
    },
    Setting {
        name: KUGETSU_VERBOSITY,
        aliases: &[],
        default: DefaultValue::Is("default"),
        summary: "PM agent verbosity level: verbose, default, or quiet",
        doc: "`verbose`, `default` or `quiet`",
        example: None,
        secret: false,
        parse: |c, v| {
            c.verbosity = match v.trim() {
                "verbose" => Verbosity::Verbose,
                "default" => Verbosity::Default,
                "quiet" => Verbosity::Quiet,
                _ => return Err("is not one of verbose, default, quiet".into()),
            };
            Ok(())
        },
        display: |c| c.verbosity.to_string(),
    },
    Setting {
        name: QUEUE_DAEMON_INTERVAL_MINUTES,
        aliases: &[],
        default: DefaultValue::Is("5"),
        summary: "How often the queue daemon polls the queue, in minutes",
        doc: "how often the daemon polls (it also wakes on every enqueue)",
        example: None,
        secret: false,
        parse: |c, v| {
            c.queue_daemon_interval_minutes = number(v, 1, MAX_MINUTES)?;
            Ok(())
        },
        display: |c| c.queue_daemon_interval_minutes.to_string(),
    },
    Setting {
        name: KUGETSU_WATCH_INTERVAL_SECONDS,
        aliases: &[],
        default: DefaultValue::Is("60"),
        summary: "How often the queue daemon polls each watched tracker, in seconds",
        doc: "how often the daemon asks each watched repository for new labelled issues (see \
              [Watching a tracker](#watching-a-tracker)); an unchanged listing costs one \
              conditional request",
        example: None,
        secret: false,
        parse: |c, v| {
            c.watch_interval_seconds = number(v, 1, 24 * 60 * 60)?;
            Ok(())
        },
        display: |c| c.watch_interval_seconds.to_string(),
    },
    Setting {
        name: QUEUE_CLEANUP_AGE_DAYS,
        aliases: &[],
        default: DefaultValue::Is("7"),
        summary: "Clean up completed/error queue items older than this many days",
        doc: "`queue clear` removes finished items older than this",
        example: None,
        secret: false,
        parse: |c, v| {
            c.queue_cleanup_age_days = number(v, 0, MAX_CLEANUP_DAYS)?;
            Ok(())
        },
        display: |c| c.queue_cleanup_age_days.to_string(),
    },
    Setting {
        name: KUGETSU_AGENT,
        aliases: &[],
        default: DefaultValue::Is(DEFAULT_DRIVER),
        summary: "The coding agent that runs the sessions (its driver's name)",
        doc: "the coding agent's driver: one of those the command line is built with (`opencode`, \
              `claude`); a session remembers the driver that made it, and `continue` and \
              `destroy` refuse a session of another",
        example: None,
        secret: false,
        parse: |c, v| {
            let name = v.trim();
            let driver_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
            if name.is_empty() || !name.bytes().all(driver_name) {
                return Err("is not a driver name (lowercase letters, digits, '-')".into());
            }
            c.agent = name.to_string();
            Ok(())
        },
        display: |c| c.agent.clone(),
    },
    Setting {
        name: KUGETSU_AGENT_BIN,
        aliases: &[KUGETSU_OPENCODE_BIN],
        default: DefaultValue::Unset("the driver's program"),
        summary: "The agent program (a name looked up in PATH, or a path)",
        doc: "the agent program (a name looked up in `PATH`, or a path); `opencode` for the \
              opencode driver. `KUGETSU_OPENCODE_BIN`, its old name, is still read",
        example: Some("opencode"),
        secret: false,
        parse: |c, v| {
            if v.trim().is_empty() {
                return Err("is empty".into());
            }
            c.agent_bin = Some(PathBuf::from(v));
            Ok(())
        },
        display: |c| {
            c.agent_bin
                .as_ref()
                .map_or_else(|| "(the driver's)".into(), |p| p.display().to_string())
        },
    },
    Setting {
        name: KUGETSU_DEFAULT_REPO,
        aliases: &[],
        default: DefaultValue::Unset("none"),
        summary: "Repository for short refs like #14, as instance/owner/repo",
        doc: "`instance/owner/repo` for short `#14` refs",
        example: Some("github.com/owner/repo"),
        secret: false,
        parse: |c, v| {
            c.default_repo = if v.trim().is_empty() {
                None
            } else {
                Some(RepoRef::parse(v).map_err(|e| format!("is not a repository: {e}"))?)
            };
            Ok(())
        },
        display: |c| c.default_repo.as_ref().map_or_else(|| "(none)".into(), |r| r.to_string()),
    },
    Setting {
        name: KUGETSU_AGENT_TIMEOUT_MINUTES,
        aliases: &[],
        default: DefaultValue::Is("60"),
        summary: "Kill an agent run after this many minutes",
        doc: "a run is killed after this long",
        example: None,
        secret: false,
        parse: |c, v| {
            c.agent_timeout_minutes = number(v, 1, MAX_MINUTES)?;
            Ok(())
        },
        display: |c| c.agent_timeout_minutes.to_string(),
    },
    Setting {
        name: KUGETSU_AGENT_IDLE_MINUTES,
        aliases: &[],
        default: DefaultValue::Is("15"),
        summary: "Kill an agent run that prints nothing and whose processes use no CPU or I/O for this many minutes",
        doc: "a run is killed as hung when for this long it prints nothing and its processes (the \
              agent and every command it started) use no CPU or I/O worth counting and do not \
              wait for a CPU most of the time: a long silent build is not a hang, on a busy \
              machine either",
        example: None,
        secret: false,
        parse: |c, v| {
            c.agent_idle_minutes = number(v, 1, MAX_MINUTES)?;
            Ok(())
        },
        display: |c| c.agent_idle_minutes.to_string(),
    },
    Setting {
        name: KUGETSU_QUEUE_URL,
        aliases: &[],
        default: DefaultValue::Unset("none"),
        summary: "postgres:// URL of a queue shared by several hosts (default: files in the state directory)",
        doc: "a `postgres://` URL: the queue, the agent slots and the daemons' leases live there, \
              shared by several hosts (see [Several hosts](#several-hosts)); shown with its \
              credentials masked, never given to agents (see [The queue's password](#the-queues-password))",
        example: Some("postgres://kugetsu@db.example/kugetsu"),
        secret: true,
        parse: |c, v| {
            let url = v.trim();
            c.queue_url = if url.is_empty() {
                None
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Some(url.to_string())
            } else {
                return Err("is not a postgres:// or postgresql:// URL".into());
            };
            Ok(())
        },
        display: |c| {
            c.queue_url.as_deref().map_or_else(|| "(none)".into(), crate::secrets::conninfo::redact)
        },
    },
    Setting {
        name: KUGETSU_GLOBAL_MAX_AGENTS,
        aliases: &[],
        default: DefaultValue::Unset("none"),
        summary: "With a shared queue: max concurrent dev agents across all hosts",
        doc: "with a shared queue, dev agents running at once across every host \
              (`MAX_CONCURRENT_AGENTS` stays the limit of each host)",
        example: Some("8"),
        secret: false,
        parse: |c, v| {
            c.global_max_agents = if v.trim().is_empty() {
                None
            } else {
                Some(number(v, 1, MAX_GLOBAL_AGENTS as u64)? as usize)
            };
            Ok(())
        },
        display: |c| c.global_max_agents.map_or_else(|| "(none)".into(), |n| n.to_string()),
    },
    Setting {
        name: KUGETSU_QUEUE_LEASE_SECONDS,
        aliases: &[],
        default: DefaultValue::Is("30"),
        summary: "With a shared queue: seconds before a silent host's claimed work runs elsewhere",
        doc: "with a shared queue, how long a daemon's claim lasts without its heartbeat: how \
              soon a dead host's work runs elsewhere",
        example: None,
        secret: false,
        parse: |c, v| {
            c.queue_lease_seconds = number(v, 2, 3600)?;
            Ok(())
        },
        display: |c| c.queue_lease_seconds.to_string(),
    },
    Setting {
        name: KUGETSU_HOST_LOST_SECONDS,
        aliases: &[],
        default: DefaultValue::Is("300"),
        summary: "With a shared queue: seconds a host's daemon may be silent before its issues move",
        doc: "with a shared queue, how long a host's daemon may be silent (its leases expired) \
              before the host counts as lost: the issues waiting for it then move to the other \
              hosts by themselves (see [Several hosts](#several-hosts))",
        example: None,
        secret: false,
        parse: |c, v| {
            c.host_lost_seconds = number(v, 1, 7 * 24 * 3600)?;
            Ok(())
        },
        display: |c| c.host_lost_seconds.to_string(),
    },
    Setting {
        name: KUGETSU_MOVE_MAX_MB,
        aliases: &[],
        default: DefaultValue::Is("50"),
        summary: "With a shared queue: megabytes of an issue's history saved for other hosts",
        doc: "with a shared queue, the most megabytes each part of an issue's history (its agent \
              session's export, its worktree's unpushed commits and uncommitted files) saved \
              after each turn for another host may take; a part over it is not saved, and a \
              move says so",
        example: None,
        secret: false,
        parse: |c, v| {
            c.move_max_mb = number(v, 1, 4096)?;
            Ok(())
        },
        display: |c| c.move_max_mb.to_string(),
    },
    Setting {
        name: KUGETSU_WARM_AGENT,
        aliases: &[],
        default: DefaultValue::Is("daemon"),
        summary: "Keep the agent warm for forks while the queue daemon runs (daemon), or never (off)",
        doc: "`daemon`: while the queue daemon runs it keeps one `opencode serve` (about 320 MB, \
              1–2 s of CPU a minute when idle) through which every `start` of this state \
              directory, foreground or queued, makes its fork without an `import` process; \
              without a running daemon `start` imports as before. `off`: never. The serve \
              listens on 127.0.0.1 with a random basic-auth password kept `0600` in `cache/`",
        example: None,
        secret: false,
        parse: |c, v| {
            c.warm_agent = match v.trim() {
                "daemon" => true,
                "off" => false,
                _ => return Err("is not `daemon` or `off`".into()),
            };
            Ok(())
        },
        display: |c| (if c.warm_agent { "daemon" } else { "off" }).into(),
    },
    Setting {
        name: KUGETSU_WARM_AGENT_IDLE_MINUTES,
        aliases: &[],
        default: DefaultValue::Is("0"),
        summary: "If > 0, a start without a warm agent leaves one, stopped after this many minutes without a fork",
        doc: "when more than 0, a foreground `start` that finds no warm serve leaves one running \
              in the background (`kugetsu warm-agent`, a hidden command), so the next `start` \
              forks without an `import`; it stops by itself after this many minutes without a \
              fork. 0: only the daemon keeps one",
        example: None,
        secret: false,
        parse: |c, v| {
            c.warm_agent_idle_minutes = number(v, 0, MAX_MINUTES)?;
            Ok(())
        },
        display: |c| c.warm_agent_idle_minutes.to_string(),
    },
    Setting {
        name: KUGETSU_ISSUE_BUDGET_USD,
        aliases: &[],
        default: DefaultValue::Unset("none"),
        summary: "US dollars one issue's turns may cost in all (a turn reaching it is stopped)",
        doc: "US dollars one issue's turns may cost in all, as the agent reports the cost: a \
              turn that reaches it is stopped at its next step (`over_budget`, exit 5), no \
              further turn of the issue starts, and its queued items wait until the limit is \
              raised (see [Cost and budgets](#cost-and-budgets))",
        example: Some("2.50"),
        secret: false,
        parse: |c, v| {
            c.issue_budget_usd = dollars(v)?;
            Ok(())
        },
        display: |c| c.issue_budget_usd.map_or_else(|| "(none)".into(), |d| d.to_string()),
    },
    Setting {
        name: KUGETSU_DAILY_BUDGET_USD,
        aliases: &[],
        default: DefaultValue::Unset("none"),
        summary: "US dollars this host's turns may cost in one UTC day",
        doc: "US dollars this host's turns (every issue's and the PM agent's) may cost in one UTC \
              day: a turn that reaches it is stopped at its next step, and queued items wait \
              until the limit is raised or the next day begins at 00:00 UTC. On a shared queue \
              it is per host: each host counts its own turns against its own limit",
        example: Some("20"),
        secret: false,
        parse: |c, v| {
            c.daily_budget_usd = dollars(v)?;
            Ok(())
        },
        display: |c| c.daily_budget_usd.map_or_else(|| "(none)".into(), |d| d.to_string()),
    },
    Setting {
        name: KUGETSU_NOTIFY_URL,
        aliases: &[],
        default: DefaultValue::Unset("none"),
        summary: "http(s) URLs (comma- or space-separated) notifications are POSTed to as JSON",
        doc: "one or more `http://`/`https://` URLs, separated by commas or spaces: every \
              notification that needs a person (a task failed, blocked or hung; completed with \
              `KUGETSU_NOTIFY_COMPLETED`) is POSTed there as JSON (see [Being told](#being-told)); \
              shown masked, never given to agents",
        example: Some("https://hooks.slack.com/services/T000/B000/XXXX"),
        secret: true,
        parse: |c, v| {
            let mut urls = Vec::new();
            for (n, url) in crate::secrets::webhook::split(v).enumerate() {
                crate::secrets::webhook::check(url)
                    .map_err(|why| format!("has an entry ({}) that {why}", n + 1))?;
                urls.push(url.to_string());
            }
            c.notify_urls = urls;
            Ok(())
        },
        display: |c| {
            if c.notify_urls.is_empty() {
                return "(none)".into();
            }
            let masked: Vec<String> =
                c.notify_urls.iter().map(|u| crate::secrets::webhook::redact(u)).collect();
            masked.join(", ")
        },
    },
    Setting {
        name: KUGETSU_NOTIFY_COMPLETED,
        aliases: &[],
        default: DefaultValue::Is("0"),
        summary: "1: post completed tasks to KUGETSU_NOTIFY_URL too",
        doc: "`1`: a completed task is posted to `KUGETSU_NOTIFY_URL` too; `0`: only what needs a \
              person",
        example: None,
        secret: false,
        parse: |c, v| {
            c.notify_completed = match v.trim() {
                "1" => true,
                "0" | "" => false,
                _ => return Err("is not 1 or 0".into()),
            };
            Ok(())
        },
        display: |c| (if c.notify_completed { "1" } else { "0" }).into(),
    },
    Setting {
        name: KUGETSU_REPORT_LABELS,
        aliases: &[],
        default: DefaultValue::Is("kugetsu:running,kugetsu:blocked,kugetsu:done"),
        summary: "Labels of a watched issue: running, blocked, done (or off)",
        doc: "three label names, separated by commas, that a watched issue carries while a turn \
              runs, when a turn ended needing a person (blocked, failed, hung, timed out), and \
              when one completed; each replaces the other two (see \
              [Reporting back](#reporting-back)). `off`: labels are left alone",
        example: None,
        secret: false,
        parse: |c, v| {
            c.report_labels = crate::report::StatusLabels::parse(v)?;
            Ok(())
        },
        display: |c| c.report_labels.as_ref().map_or("off".into(), |l| l.to_string()),
    },
    Setting {
        name: KUGETSU_PULL_REQUESTS,
        aliases: &[],
        default: DefaultValue::Is("draft"),
        summary: "After a completed turn with commits: push and open a draft pull request (draft) or not (off)",
        doc: "`draft`: after a completed turn of a watched issue whose branch has commits, the \
              branch `fix/issue-N` is pushed (never over commits kugetsu did not make) and a \
              draft pull request (GitLab: merge request) that links the issue is opened, then \
              updated by later turns. `off`: nothing is pushed",
        example: None,
        secret: false,
        parse: |c, v| {
            c.pull_requests = match v.trim() {
                "draft" => true,
                "off" => false,
                _ => return Err("is not `draft` or `off`".into()),
            };
            Ok(())
        },
        display: |c| (if c.pull_requests { "draft" } else { "off" }).into(),
    },
    Setting {
        name: KUGETSU_COMMIT_LEFTOVERS,
        aliases: &[],
        default: DefaultValue::Is("1"),
        summary: "1: commit what a completed turn left uncommitted before the push (with pull requests on)",
        doc: "`1`: while `KUGETSU_PULL_REQUESTS` is on, what a completed turn of a watched issue \
              left uncommitted in its worktree (changed, new and deleted files, not ignored \
              ones) is committed on the issue branch before the push; files over 10 MB, env \
              files (`.env`, `.env.*`) and files holding a value of the env files are left out \
              and named in the comment. `0`: only the agent's own commits are pushed",
        example: None,
        secret: false,
        parse: |c, v| {
            c.commit_leftovers = match v.trim() {
                "1" => true,
                "0" => false,
                _ => return Err("is not 1 or 0".into()),
            };
            Ok(())
        },
        display: |c| (if c.commit_leftovers { "1" } else { "0" }).into(),
    },
    Setting {
        name: KUGETSU_LOOP_ROUNDS,
        aliases: &[],
        default: DefaultValue::Is("3"),
        summary: "Most continues per watched issue for failed checks and change requests (0: off)",
        doc: "while the daemon watches a repository, a failed check of an issue's open pull \
              request, or a review requesting changes, queues a `continue` of the issue with \
              what the check or review said (see [The loop](#the-loop)); at most this many per \
              issue, then a `loop_limit` notification. 0: no loop",
        example: None,
        secret: false,
        parse: |c, v| {
            c.loop_rounds = u32::try_from(number(v, 0, 100)?).unwrap_or(3);
            Ok(())
        },
        display: |c| c.loop_rounds.to_string(),
    },
];

/// An amount of dollars more than 0 (`5`, `2.50`), or nothing for an empty value.
fn dollars(value: &str) -> Result<Option<crate::usage::Usd>, String> {
    let value = value.trim().trim_start_matches('$');
    if value.is_empty() {
        return Ok(None);
    }
    let n: f64 =
        value.parse().map_err(|_| "is not an amount of dollars (like 2.50)".to_string())?;
    match crate::usage::Usd::new(n) {
        Some(d) if n > 0.0 && n <= 1e9 => Ok(Some(d)),
        _ => Err("is out of range (more than 0, at most 1000000000)".into()),
    }
}

/// A whole number from `min` to `max`.
fn number(value: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = value.trim().parse().map_err(|_| "is not a whole number".to_string())?;
    if n < min || n > max {
        return Err(format!("is out of range ({min} to {max})"));
    }
    Ok(n)
}

/// PM agent verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Report every step.
    Verbose,
    /// Report what matters.
    #[default]
    Default,
    /// Report only results and errors.
    Quiet,
}

impl Verbosity {
    /// The word used in `config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verbosity::Verbose => "verbose",
            Verbosity::Default => "default",
            Verbosity::Quiet => "quiet",
        }
    }
}

impl fmt::Display for Verbosity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
