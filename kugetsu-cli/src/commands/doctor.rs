//! `kugetsu doctor [--fix] [--fix-permissions]`: cross-checks the state directory, the
//! worktrees, the agent's sessions and the daemon, and explains each problem in a sentence.

use std::io::Write;

use kugetsu_core::orchestrator::Finding;

use crate::context::Ctx;
use crate::error::CliError;

/// Arguments of `doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Repair what can be repaired safely.
    #[arg(long)]
    pub fix: bool,
    /// Re-apply the permission rules that forked sessions lose (keeps headless runs from hanging).
    #[arg(long)]
    pub fix_permissions: bool,
}

/// Prints each finding; exits 1 when a problem remains unfixed.
pub fn cmd_doctor(ctx: &Ctx, args: &DoctorArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let orch = ctx.orchestrator()?;
    let mut findings = orch.doctor(args.fix, args.fix_permissions)?;
    findings.extend(ctx.environment_findings());
    if ctx.json {
        ctx.print_json(out, &findings)?;
    } else if findings.is_empty() {
        writeln!(out, "no problems found in {}", ctx.state.root().display())?;
    } else {
        for Finding { subject, problem, remedy, fixed } in &findings {
            let mark = if *fixed { "fixed" } else { "problem" };
            writeln!(out, "{mark}: {subject}: {problem}")?;
            writeln!(out, "  {}: {remedy}", if *fixed { "done" } else { "fix" })?;
        }
    }
    if findings.iter().any(|f| !f.fixed) {
        return Err(CliError::silent(crate::error::exit::FAILURE));
    }
    Ok(())
}
