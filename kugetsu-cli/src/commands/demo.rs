//! `kugetsu demo`: the whole flow in a scratch directory, narrated, with a local git
//! repository and the bundled fake agent, so a new user sees kugetsu work without opencode or
//! an API key. Every step runs the real command code against a real state directory: only the
//! agent is a stand-in (the `opencode` it runs is this binary, acting as the fake).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kugetsu_core::StateDir;

use crate::commands;
use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Scratch directory to use: a new one, or an empty one of yours that only you can write
    /// to (default: a new private one with a random name under the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the scratch directory afterwards, to look around.
    #[arg(long)]
    pub keep: bool,
}

/// The demo's issue.
const ISSUE: &str = "local.test/demo/app#1";

fn step(out: &mut dyn Write, n: u32, command: &str, why: &str) -> Result<(), CliError> {
    writeln!(out, "\n[{n}] $ kugetsu {command}")?;
    writeln!(out, "    {why}")?;
    Ok(())
}

fn git(repo: &Path, home: &Path, args: &[&str]) -> Result<(), CliError> {
    let mut cmd = Command::new("git");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(k);
        }
    }
    let status = cmd
        .args(["-c", "user.name=kugetsu demo", "-c", "user.email=demo@kugetsu.invalid"])
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            CliError::new(exit::FAILURE, format!("cannot run git to make the demo repository: {e}"))
                .with_hint("the demo needs the `git` program to create its sample repository")
        })?;
    if !status.status.success() {
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&status.stderr).trim()
            ),
        ));
    }
    Ok(())
}

fn sample_repo(scratch: &Path) -> Result<PathBuf, CliError> {
    let repo = scratch.join("repos").join("app");
    std::fs::create_dir_all(repo.join("src"))?;
    std::fs::write(repo.join("README.md"), "# app\n\nA sample repository for the kugetsu demo.\n")?;
    std::fs::write(repo.join("src/main.rs"), "fn main() {\n    println!(\"hello\");\n}\n")?;
    git(&repo, scratch, &["init", "-q"])?;
    git(&repo, scratch, &["add", "."])?;
    git(&repo, scratch, &["commit", "-q", "-m", "Initial commit"])?;
    Ok(repo)
}

/// The demo's scratch directory. The demo runs the `bin/opencode` it puts there, so nobody
/// else may have made or be able to change it: by default a new directory of the system temp
/// dir with a random name, created `0700` by a call that fails if the name exists (another
/// local user cannot prepare it); with `--dir`, a new directory, or an empty one of the user's
/// own that others cannot write to.
fn scratch_dir(args: &DemoArgs) -> Result<PathBuf, CliError> {
    let Some(dir) = &args.dir else {
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        let made = tempfile::Builder::new()
            .prefix("kugetsu-demo-")
            .permissions(private)
            .tempdir()
            .map_err(|e| {
                CliError::new(
                    exit::FAILURE,
                    format!("cannot make the demo's scratch directory: {e}"),
                )
                .with_hint("name a directory with --dir")
            })?;
        // Removed by `cmd_demo` itself, or kept on purpose (`--keep`, a failure).
        return Ok(made.keep());
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            kugetsu_core::storage::ensure_dir(dir)?;
            return Ok(dir.clone());
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let refuse = |why: String| {
        CliError::usage(why).with_hint("name a new directory, or an empty one of yours, with --dir")
    };
    kugetsu_core::storage::check_private_dir(dir).map_err(|e| refuse(e.to_string()))?;
    if std::fs::read_dir(dir)?.next().is_some() {
        return Err(refuse(format!("{} exists and is not empty", dir.display())));
    }
    Ok(dir.clone())
}

/// Waits until the queue has nothing pending or running, printing each new notification.
fn drain(ctx: &Ctx, out: &mut dyn Write, timeout: Duration) -> Result<(), CliError> {
    let queue = crate::queue_backend::queue(ctx, &ctx.config()?)?;
    let notes = kugetsu_core::notify::Notifications::new(&ctx.state);
    let deadline = Instant::now() + timeout;
    let mut shown = 0;
    loop {
        let listing = notes.list(false)?;
        for n in listing.notifications.iter().skip(shown) {
            writeln!(out, "    notification: {:<14} {}", n.kind.as_str(), n.message)?;
        }
        shown = listing.notifications.len();
        let s = queue.stats()?;
        if s.pending == 0 && s.notified == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::new(exit::FAILURE, "the demo's queue did not drain in time")
                .with_hint("`kugetsu queue-daemon logs` in the scratch directory tells why"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an environment variable is one of the user's settings that the demo ignores: every
/// config key and `KUGETSU_*` variable, opencode's and the fake agent's settings, and git's.
fn is_users_setting(key: &str) -> bool {
    let agents = crate::agents::default_entry().fake.as_ref().map_or(&[][..], |f| f.env_prefixes);
    key.starts_with("KUGETSU_")
        || agents.iter().any(|prefix| key.starts_with(prefix))
        || key.starts_with("GIT_")
        || kugetsu_core::config::is_key(key)
}

/// Runs the demo.
pub fn cmd_demo(ui: &mut Ui, ctx: &Ctx, args: &DemoArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let scratch = scratch_dir(args)?;
    let result = run(ui, ctx, &scratch);
    // Whatever happened, never leave the demo's daemon behind.
    let state = StateDir::new(scratch.join("state"));
    let _ = kugetsu_queue::daemon::stop(&state, Duration::from_secs(5));
    if args.keep || result.is_err() {
        writeln!(ui.stdout(), "\nthe scratch directory is kept: {}", scratch.display())?;
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result?;
    writeln!(ui.stdout(), "\ndemo finished in {:.1}s", started.elapsed().as_secs_f64())?;
    Ok(())
}

fn run(ui: &mut Ui, ctx: &Ctx, scratch: &Path) -> Result<(), CliError> {
    writeln!(ui.stdout(), "kugetsu demo: the whole flow in {}", scratch.display())?;
    writeln!(
        ui.stdout(),
        "with a local git repository and the bundled fake agent standing in for opencode."
    )?;

    let repo = sample_repo(scratch)?;
    let bin = scratch.join("bin");
    kugetsu_core::storage::ensure_dir(&bin)?;
    let driver = crate::agents::default_entry();
    let (Some(program), Some(bundled)) = (driver.program, driver.fake.as_ref()) else {
        return Err(CliError::new(exit::FAILURE, "this build has no fake agent for the demo"));
    };
    let fake = bin.join(program);
    std::os::unix::fs::symlink(std::env::current_exe()?, &fake)?;

    let mut demo = ctx.clone();
    demo.state = StateDir::new(scratch.join("state"));
    demo.json = false;
    demo.stdin_tty = false;
    demo.overrides.clear();
    // Hermetic: none of the user's kugetsu, opencode or git settings reach the demo, its daemon
    // or its agents (a custom KUGETSU_AGENT_BIN would run a real agent on their account).
    demo.env.retain(|key, _| !is_users_setting(key));
    demo.state.ensure()?;
    let config = format!(
        "# written by kugetsu demo\nKUGETSU_AGENT_BIN={}\nMAX_CONCURRENT_AGENTS=2\nKUGETSU_DEFAULT_REPO=local.test/demo/app\nKUGETSU_AGENT_TIMEOUT_MINUTES=2\nKUGETSU_AGENT_IDLE_MINUTES=1\n",
        fake.display()
    );
    kugetsu_core::storage::atomic_write(&demo.state.config_path(), config.as_bytes())?;
    kugetsu_core::repos::Repos::new(&demo.state)
        .set("local.test/demo/app", &repo.display().to_string())?;
    let script = scratch.join("fake-agent.json");
    std::fs::write(
        &script,
        (bundled.script)(
            "GREETING.md",
            "Hello from the agent working on local.test/demo/app#1.\n",
            "I wrote GREETING.md with a greeting.",
        ),
    )?;
    let env = kugetsu_core::env_file::EnvFiles::new(&demo.state);
    let env_err =
        |e: kugetsu_core::env_file::EnvFileError| CliError::new(exit::FAILURE, e.to_string());
    for (key, value) in (bundled.env)(&script, scratch) {
        env.set(key, &value, "default").map_err(env_err)?;
    }
    writeln!(ui.stdout(), "    sample repository: {}", repo.display())?;

    step(ui.stdout(), 1, "init --headless", "prime the base session and the PM agent session")?;
    commands::init::cmd_init(
        ui,
        &demo,
        &commands::init::InitArgs { force: false, headless: true },
    )?;

    step(ui.stdout(), 2, "status", "check that kugetsu is ready")?;
    commands::status::cmd_status(ui, &demo, &commands::status::StatusArgs {})?;

    step(
        ui.stdout(),
        3,
        "queue-daemon start",
        "the background daemon drains the queue, at most MAX_CONCURRENT_AGENTS agents at once",
    )?;
    commands::queue_daemon::cmd_queue_daemon(
        ui,
        &demo,
        &commands::queue_daemon::QueueDaemonArgs {
            action: commands::queue_daemon::DaemonAction::Start(
                commands::queue_daemon::start::DaemonStartArgs {},
            ),
        },
    )?;

    step(
        ui.stdout(),
        4,
        &format!("queue enqueue {ISSUE} \"add a greeting\""),
        "hand work on an issue to the daemon; it returns at once",
    )?;
    commands::queue::cmd_queue(
        ui,
        &demo,
        &commands::queue::QueueArgs {
            action: commands::queue::QueueAction::Enqueue(
                commands::queue::enqueue::QueueEnqueueArgs {
                    issue_ref: ISSUE.into(),
                    message: "add a greeting".into(),
                },
            ),
        },
    )?;
    step(
        ui.stdout(),
        5,
        "delegate \"what should we work on next?\"",
        "a plain-language request for the PM agent",
    )?;
    commands::delegate::cmd_delegate(
        ui,
        &demo,
        &commands::delegate::DelegateArgs { message: "what should we work on next?".into() },
    )?;

    writeln!(
        ui.stdout(),
        "\n    waiting for the daemon: it clones the repository into a mirror, makes a worktree on"
    )?;
    writeln!(
        ui.stdout(),
        "    fix/issue-1, forks the base session into it and runs the agent there"
    )?;
    drain(&demo, ui.stdout(), Duration::from_secs(90))?;

    step(ui.stdout(), 6, "list", "every session kugetsu tracks")?;
    commands::list::cmd_list(ui, &demo, &commands::list::ListArgs {})?;
    let issue = demo.parse_issue(ISSUE)?;
    let worktree = demo.state.worktree_path(&issue);
    let greeting = std::fs::read_to_string(worktree.join("GREETING.md")).map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("the agent's file is not in the worktree {}: {e}", worktree.display()),
        )
    })?;
    writeln!(ui.stdout(), "    the agent wrote {}:", worktree.join("GREETING.md").display())?;
    writeln!(ui.stdout(), "      {}", greeting.trim_end())?;

    step(
        ui.stdout(),
        7,
        &format!("continue {ISSUE} \"now add tests\""),
        "another turn in the same session and worktree, in the foreground",
    )?;
    commands::continue_::cmd_continue(
        ui,
        &demo,
        &commands::continue_::ContinueArgs {
            issue_ref: ISSUE.into(),
            message: "now add tests".into(),
            run: crate::run::RunFlags { detach: false, no_wait: false, wait: Some(60) },
        },
    )?;

    step(ui.stdout(), 8, "notify list", "what the queue reported")?;
    commands::notify::cmd_notify(ui, &demo, &commands::notify::NotifyArgs { action: None })?;

    step(
        ui.stdout(),
        9,
        &format!("destroy {ISSUE} -y"),
        "kugetsu refuses to throw away the agent's uncommitted work...",
    )?;
    let destroy = |force| commands::destroy::DestroyArgs {
        issue_ref: Some(ISSUE.into()),
        pm_agent: false,
        base: false,
        yes: true,
        force,
    };
    match commands::destroy::cmd_destroy(ui, &demo, &destroy(false)) {
        Err(e) => {
            writeln!(ui.stdout(), "    {}", e.render().trim_end().replace('\n', "\n    "))?;
        }
        Ok(()) => {
            return Err(CliError::new(
                exit::FAILURE,
                "destroy removed unsaved work without --force",
            ));
        }
    }
    step(ui.stdout(), 10, &format!("destroy {ISSUE} -y --force"), "...unless told to")?;
    commands::destroy::cmd_destroy(ui, &demo, &destroy(true))?;

    step(ui.stdout(), 11, "queue-daemon stop", "stop the daemon")?;
    commands::queue_daemon::cmd_queue_daemon(
        ui,
        &demo,
        &commands::queue_daemon::QueueDaemonArgs {
            action: commands::queue_daemon::DaemonAction::Stop(
                commands::queue_daemon::stop::DaemonStopArgs {},
            ),
        },
    )?;
    writeln!(
        ui.stdout(),
        "\nWith opencode installed (npm install -g @opencode/cli), the same commands do the real thing:"
    )?;
    writeln!(
        ui.stdout(),
        "  kugetsu init && kugetsu queue-daemon start && kugetsu delegate \"work on issue #14\""
    )?;
    Ok(())
}
