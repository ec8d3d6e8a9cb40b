//! `kugetsu init [--force] [--headless]`: primes the base and PM agent sessions, writes the
//! default config and env files, and gives the agents this kugetsu's SKILL.md.

use kugetsu_core::orchestrator::InitOptions;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// The agents' manual: how to drive this kugetsu. Given to every session `init` creates and
/// written to the state directory.
pub const SKILL_MD: &str = include_str!("../../SKILL.md");

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Re-initialize: create new base and PM agent sessions even if they exist.
    #[arg(long)]
    pub force: bool,
    /// Create the sessions without the TUI (no terminal needed: servers, SSH, CI).
    #[arg(long)]
    pub headless: bool,
}

/// The base session's priming prompt.
pub fn base_prompt() -> String {
    format!(
        "You are a developer agent managed by kugetsu. Each conversation forked from this one works \
         on exactly one issue, inside its own git worktree (the current directory) on branch \
         fix/issue-<id>. Work only inside that directory, commit your changes on that branch, and \
         finish each turn with a short summary of what you did and what is left. Reply \"ready\" now.\n\n\
         {SKILL_MD}"
    )
}

/// The PM agent's priming prompt.
pub fn pm_prompt() -> String {
    format!(
        "You are the PM agent of kugetsu. You receive plain-language requests (\"work on issue #14\", \
         \"review PR #92\"). For each one decide what to do and use the kugetsu command line: \
         `kugetsu start <issue-ref> <message>` for a new issue, `kugetsu continue <issue-ref> <message>` \
         for one that `kugetsu list` already shows, `kugetsu queue enqueue` to defer. Never edit \
         repositories yourself. Reply \"ready\" now.\n\n{SKILL_MD}"
    )
}

/// Initializes kugetsu.
pub fn cmd_init(ui: &mut Ui, ctx: &Ctx, args: &InitArgs) -> Result<(), CliError> {
    let interactive = !args.headless;
    if interactive && !ctx.stdin_tty {
        return Err(CliError::usage(
            "`kugetsu init` opens the agent interactively and needs a terminal",
        )
        .with_hint("run `kugetsu init --headless` where there is no terminal"));
    }
    ctx.state.ensure()?;
    let config = ctx.config()?;
    crate::wiring::prepare_state(ctx)?;
    let workspace = ctx.state.root().join("workspace");
    kugetsu_core::storage::ensure_dir(&workspace)?;
    kugetsu_core::storage::atomic_write(&workspace.join("SKILL.md"), SKILL_MD.as_bytes())?;
    let orch = ctx.orchestrator_with(&config)?;
    if !args.force
        && let Some(base) = orch.read_index()?.and_then(|i| i.base)
    {
        return Err(kugetsu_core::orchestrator::OrchestratorError::AlreadyInitialized {
            root: ctx.state.root().into(),
            base: base.to_string(),
        }
        .into());
    }
    let (out, err) = ui.streams();
    if !ctx.json {
        writeln!(
            err,
            "creating the base and PM agent sessions ({})",
            if interactive { "TUI" } else { "headless" }
        )?;
    }
    if interactive {
        // The TUIs share our terminal and process group: Ctrl-C, the usual way to leave
        // opencode, reaches kugetsu too and would kill it before it records the session. While
        // the TUIs run, Ctrl-C is theirs (as git leaves it to the editor it waits for); SIGTERM
        // and a hang-up still stop the TUI and kugetsu.
        crate::signals::leave_ctrl_c_to_the_foreground_program();
        crate::signals::stop_on(
            &ctx.interrupt,
            &[kugetsu_core::interrupt::signals::SIGTERM, kugetsu_core::interrupt::signals::SIGHUP],
        );
    } else {
        crate::signals::stop_on_signals(&ctx.interrupt);
    }
    let mut events = crate::progress::EventPrinter::new(err, true);
    let report = orch.init(
        &InitOptions {
            force: args.force,
            interactive,
            session_dir: workspace,
            base_prompt: base_prompt(),
            pm_prompt: pm_prompt(),
        },
        &mut events,
    )?;
    if ctx.json {
        return ctx.print_json(out, &report);
    }
    writeln!(out, "base session     {}", report.base)?;
    writeln!(out, "pm-agent session {}", report.pm_agent)?;
    writeln!(out, "initialized {}", ctx.state.root().display())?;
    Ok(())
}
