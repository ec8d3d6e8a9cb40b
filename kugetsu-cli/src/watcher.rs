//! The queue daemon's watcher: a thread that polls each watched repository every
//! `KUGETSU_WATCH_INTERVAL_SECONDS` through its forge's client (`kugetsu-forge`), with the
//! token routed by the forge's kind, and lets core decide what each poll does
//! ([`kugetsu_core::watch::poll`]), which issues are over ([`kugetsu_core::cleanup`], their
//! worktrees removed unless they hold work), then what each pull request says back
//! ([`kugetsu_core::feedback::poll`], the loop). This file only wires and reports.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use kugetsu_core::RepoRef;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::notify::NotificationType;
use kugetsu_core::queue::TaskQueue;
use kugetsu_core::secrets::Secret;
use kugetsu_core::servers::{Servers, api_for};
use kugetsu_core::watch::{self, Watches};
use kugetsu_core::{cleanup, feedback};

use crate::context::Ctx;

/// A line for the daemon's log.
pub type LogLine = Arc<dyn Fn(&str) + Send + Sync>;

/// The daemon's watcher: polls until dropped.
pub struct WatchThread {
    // Dropping it wakes the thread, which then ends.
    _stop: Sender<()>,
}

impl WatchThread {
    /// Starts the thread; the first pass is at once.
    pub fn start(ctx: Ctx, log: LogLine) -> Self {
        let (stop, stopped) = channel();
        std::thread::Builder::new()
            .name("kugetsu-watch".into())
            .spawn(move || run(&ctx, &log, &stopped))
            .map_err(|e| tracing::warn!("cannot start the watcher thread: {e}"))
            .ok();
        WatchThread { _stop: stop }
    }
}

fn run(ctx: &Ctx, log: &LogLine, stopped: &Receiver<()>) {
    // Built once and kept (a shared queue is a database connection), again after a failure.
    let mut queue = None;
    // The forges' answers, kept from one pass to the next: asking again is conditional.
    let reads = Arc::new(kugetsu_forge::ReadCache::new());
    loop {
        let interval = ctx.config().map(|c| c.watch_interval()).unwrap_or(Duration::from_secs(60));
        pass(ctx, log, &mut queue, &reads);
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Polls every watched repository once, through `queue` (built when `None`, dropped after a
/// queue failure), its reads conditional on the answers in `reads`.
pub fn pass(
    ctx: &Ctx,
    log: &LogLine,
    cached: &mut Option<Arc<dyn TaskQueue>>,
    reads: &Arc<kugetsu_forge::ReadCache>,
) {
    let watches = Watches::new(&ctx.state);
    let Ok(file) = watches.load() else {
        log("cannot read watches.json; nothing polled");
        return;
    };
    if file.watches.is_empty() {
        return;
    }
    let config = match ctx.config() {
        Ok(c) => c,
        Err(e) => return log(&format!("watch: cannot read the config: {}", e.message)),
    };
    let queue = match cached {
        Some(q) => q.clone(),
        None => match crate::queue_backend::queue(ctx, &config) {
            Ok(q) => cached.insert(q).clone(),
            Err(e) => return log(&format!("watch: cannot open the queue: {}", e.message)),
        },
    };
    let mut queue_failed = false;
    let servers = Servers::new(&ctx.state).load().unwrap_or_default();
    let env = EnvFiles::new(&ctx.state).merged(kugetsu_core::orchestrator::DEFAULT_AGENT).ok();
    let secrets = crate::notifications::secrets(&ctx.state, Some(&config));
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    for repo in file.watches.keys() {
        let target = match RepoRef::parse(repo).map(|r| api_for(&r, &servers)) {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                log(&format!("watch {repo}: {e}"));
                continue;
            }
            Err(e) => {
                log(&format!("watch {repo}: {e}"));
                continue;
            }
        };
        let token = env
            .as_ref()
            .and_then(|e| e.0.get(target.forge.token_var()))
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(t.clone()));
        let forge = kugetsu_forge::HttpForge::new(target.forge, &target.url, token)
            .with_cache(reads.clone());
        let now = time::OffsetDateTime::now_utc();
        match watch::poll(&watches, repo, &forge, &target.repo, &*queue, &secret_refs, now) {
            Ok(report) => {
                for (issue_ref, item) in &report.enqueued {
                    log(&format!("watch {repo}: queued {item} to start {issue_ref}"));
                    crate::notifications::record_in(
                        &ctx.state,
                        Some(&config),
                        NotificationType::TaskQueued,
                        &format!("queued {item}: start {issue_ref} (labelled on the tracker)"),
                        Some(issue_ref),
                    );
                }
                for (issue_ref, item) in &report.dropped {
                    log(&format!("watch {repo}: dropped {item}: {issue_ref} closed or unlabelled"));
                    crate::notifications::record_in(
                        &ctx.state,
                        Some(&config),
                        NotificationType::Other("task_dropped".into()),
                        &format!("dropped {item}: {issue_ref} was closed or lost its label"),
                        Some(issue_ref),
                    );
                }
            }
            Err(e) => {
                queue_failed |= matches!(e, watch::WatchError::Queue { .. });
                log(&format!("{e}"));
            }
        }
        tidy(ctx, &config, log, &watches, repo, &forge, &target.repo, &*queue);
        let paused_before = file.watches.get(repo).and_then(|w| w.paused_until);
        if !config.pull_requests {
            tell_pause(&watches, repo, paused_before, log);
            continue;
        }
        let now = time::OffsetDateTime::now_utc();
        let rounds = config.loop_rounds;
        match feedback::poll(
            &watches,
            repo,
            &forge,
            &target.repo,
            &*queue,
            &secret_refs,
            now,
            rounds,
        ) {
            Ok(report) => {
                for (issue_ref, item, why) in &report.enqueued {
                    log(&format!("watch {repo}: queued {item} to continue {issue_ref}: {why}"));
                    crate::notifications::record_in(
                        &ctx.state,
                        Some(&config),
                        NotificationType::TaskQueued,
                        &format!("queued {item}: continue {issue_ref} ({why})"),
                        Some(issue_ref),
                    );
                }
                for issue_ref in &report.limited {
                    log(&format!("watch {repo}: {issue_ref} reached {rounds} rounds of the loop"));
                    crate::notifications::record_in(
                        &ctx.state,
                        Some(&config),
                        NotificationType::Other("loop_limit".into()),
                        &format!(
                            "{issue_ref}: its pull request still fails or wants changes after \
                             {rounds} rounds; not continued again (KUGETSU_LOOP_ROUNDS)"
                        ),
                        Some(issue_ref),
                    );
                }
            }
            Err(e) => {
                queue_failed |= matches!(e, watch::WatchError::Queue { .. });
                log(&format!("{e}"));
            }
        }
        tell_pause(&watches, repo, paused_before, log);
    }
    if queue_failed {
        *cached = None;
    }
}

/// Logs a pause the forge asked for during this pass, whichever request met it (the poll, the
/// cleanup's or the loop's).
fn tell_pause(watches: &Watches, repo: &str, before: Option<time::OffsetDateTime>, log: &LogLine) {
    let now = watches.load().ok().and_then(|f| f.watches.get(repo).and_then(|w| w.paused_until));
    if let Some(until) = now.filter(|t| Some(*t) != before) {
        log(&format!(
            "watch {repo}: the forge asked us to wait; paused until {}",
            kugetsu_core::clock::human(until)
        ));
    }
}

/// Removes the worktree and session of each taken issue of `repo` that is over (merged or
/// closed), keeping one that holds unsaved work; says what became of each.
#[allow(clippy::too_many_arguments)]
fn tidy(
    ctx: &Ctx,
    config: &kugetsu_core::config::Config,
    log: &LogLine,
    watches: &Watches,
    repo: &str,
    forge: &dyn kugetsu_core::forge::Forge,
    forge_repo: &str,
    queue: &dyn TaskQueue,
) {
    let now = time::OffsetDateTime::now_utc();
    let due = match cleanup::due(watches, repo, forge, forge_repo, queue, now) {
        Ok(due) => due,
        Err(e) => return log(&format!("{e}")),
    };
    for (number, issue_ref, over) in due {
        let how = match remove(ctx, config, &issue_ref) {
            Ok(how) => how,
            Err(e) => {
                log(&format!("watch {repo}: cannot clean up {issue_ref}: {e}"));
                continue;
            }
        };
        let kept = how.starts_with("kept");
        let kind = if kept { "cleanup_kept" } else { "cleaned_up" };
        let text = format!("{issue_ref}: {}; {how}", over.as_str());
        log(&format!("watch {repo}: {text}"));
        crate::notifications::record_in(
            &ctx.state,
            Some(config),
            NotificationType::Other(kind.into()),
            &text,
            Some(&issue_ref),
        );
        if let Err(e) = cleanup::record(watches, repo, number, &how) {
            log(&format!("{e}"));
        }
    }
}

/// Destroys the issue's worktree and session without force: `kept: …` when it holds work.
fn remove(
    ctx: &Ctx,
    config: &kugetsu_core::config::Config,
    issue_ref: &str,
) -> Result<String, String> {
    use kugetsu_core::orchestrator::OrchestratorError;
    use kugetsu_core::worktree::WorktreeError;
    let issue = kugetsu_core::IssueRef::parse(issue_ref).map_err(|e| e.to_string())?;
    let orchestrator = ctx.orchestrator_with(config).map_err(|e| e.message)?;
    if !orchestrator.has_session(&issue).map_err(|e| e.to_string())? {
        return Ok("nothing to remove".into());
    }
    match orchestrator.destroy_issue(&issue, false) {
        Ok(_) => Ok("removed its worktree and agent session".into()),
        Err(OrchestratorError::Worktree(WorktreeError::WouldLoseWork { path, unsaved })) => {
            let mut what = Vec::new();
            if !unsaved.changed_files.is_empty() {
                what.push(format!("{} changed files", unsaved.changed_files.len()));
            }
            if !unsaved.unpushed_commits.is_empty() {
                what.push(format!("{} unpushed commits", unsaved.unpushed_commits.len()));
            }
            Ok(format!("kept {} ({})", path.display(), what.join(", ")))
        }
        Err(e) => Err(e.to_string()),
    }
}
