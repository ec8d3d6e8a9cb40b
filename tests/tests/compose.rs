//! The crates composed as an embedding program would: real gix worktrees, real file slots and
//! the real file queue and daemon, driven by the core orchestration with an in-memory agent.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kugetsu_core::agent::NoEvents;
use kugetsu_core::clock::SystemClock;
use kugetsu_core::orchestrator::{InitOptions, Orchestrator, Settings, StartOptions};
use kugetsu_core::queue::{AgentSlots, NewTask, QueueItem, QueueStatus, TaskQueue};
use kugetsu_core::testing::{FakeAgent, FakeTurn, StaticEnv};
use kugetsu_core::worktree::{NoProgress, RepoSource};
use kugetsu_core::{IssueRef, StateDir};
use kugetsu_queue::{DispatchContext, DispatchError, DispatchOutcome, Dispatcher};
use kugetsu_test_support::git;

struct World {
    _tmp: tempfile::TempDir,
    state: StateDir,
    repo: std::path::PathBuf,
    agent: Arc<FakeAgent>,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README.md"), "hi\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let state = StateDir::new(tmp.path().join("state"));
    state.ensure().unwrap();
    World { _tmp: tmp, state, repo, agent: Arc::new(FakeAgent::default()) }
}

fn orchestrator(w: &World, slots: Arc<dyn AgentSlots>, max_agents: usize) -> Orchestrator {
    Orchestrator::new(
        w.state.clone(),
        Arc::new(
            kugetsu_git::GitWorktrees::new(
                w.state.mirrors_dir(),
                w.state.locks_dir(),
                kugetsu_git::Committer::new("kugetsu", "kugetsu@localhost"),
            )
            .with_git_config(kugetsu_git::GitConfig::Isolated),
        ),
        w.agent.clone(),
        slots,
        Arc::new(StaticEnv::default()),
        Arc::new(SystemClock),
        Settings {
            max_agents: max_agents.into(),
            slot_wait: Duration::from_secs(60),
            ..Settings::new(w.agent.liveness())
        },
    )
}

fn start_opts(w: &World, n: u32) -> StartOptions {
    let issue = IssueRef::parse(&format!("local.test/o/r#{n}")).unwrap();
    StartOptions {
        source: RepoSource {
            url: w.repo.display().to_string(),
            mirror_key: issue.repo().mirror_key(),
            token: None,
        },
        issue,
        message: format!("work on {n}"),
        base_ref: None,
        force: false,
    }
}

fn init(orch: &Orchestrator, w: &World) {
    orch.init(
        &InitOptions {
            force: false,
            interactive: false,
            session_dir: w.state.root().join("workspace"),
            base_prompt: "base".into(),
            pm_prompt: "pm".into(),
        },
        &mut NoEvents,
    )
    .unwrap();
}

#[test]
fn parallel_starts_share_one_mirror_and_respect_the_file_slots() {
    let w = world();
    let orch = orchestrator(&w, Arc::new(kugetsu_queue::FileSlots::new(&w.state)), 2);
    init(&orch, &w);
    // Turns long enough that the next start has made its worktree (one at a time, under the
    // mirror lock) while the first still runs, so that both slots are used at once.
    w.agent.script((0..6).map(|_| FakeTurn::Sleep(Duration::from_millis(400))));
    std::thread::scope(|s| {
        for n in 0..6 {
            let (orch, w) = (&orch, &w);
            s.spawn(move || {
                let summary = orch
                    .start(
                        &start_opts(w, n),
                        &mut NoProgress,
                        &AtomicBool::new(false),
                        &mut NoEvents,
                    )
                    .unwrap();
                assert!(summary.worktree_path.join("README.md").exists());
            });
        }
    });
    assert_eq!(w.agent.max_running.load(Ordering::SeqCst), 2, "the limit, held and used");
    let mirrors: Vec<_> = std::fs::read_dir(w.state.mirrors_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".git"))
        .collect();
    assert_eq!(mirrors.len(), 1, "one mirror per repository");
    assert_eq!(orch.list().unwrap().len(), 8);
}

/// A dispatcher as an embedder would write one: start or continue over the orchestration,
/// inside the slot the daemon lends.
struct Embedded {
    world: Arc<World>,
}

impl Dispatcher for Embedded {
    fn dispatch(
        &self,
        item: &QueueItem,
        ctx: &mut DispatchContext<'_>,
    ) -> Result<DispatchOutcome, DispatchError> {
        let slots: Arc<dyn AgentSlots> = Arc::new(ctx.lent_slot().expect("dev items hold a slot"));
        let orch = orchestrator(&self.world, slots, 1);
        let n: u32 =
            item.issue_ref.as_deref().and_then(|r| r.rsplit('#').next()).unwrap().parse().unwrap();
        orch.start(&start_opts(&self.world, n), &mut NoProgress, ctx.stop_flag(), &mut NoEvents)
            .map(|s| DispatchOutcome { summary: s.outcome.describe() })
            .map_err(|e| DispatchError::Retry(e.to_string()))
    }
}

#[test]
fn the_daemon_drains_the_file_queue_through_the_orchestration() {
    let w = Arc::new(world());
    let orch = orchestrator(&w, Arc::new(kugetsu_queue::FileSlots::new(&w.state)), 1);
    init(&orch, &w);
    let queue = kugetsu_queue::FileQueue::new(&w.state);
    for n in 0..3 {
        queue
            .enqueue(NewTask {
                message: "go".into(),
                issue_ref: Some(format!("local.test/o/r#{n}")),
                options: Default::default(),
            })
            .unwrap();
    }
    let daemon = kugetsu_queue::Daemon::new(
        w.state.clone(),
        Arc::new(Embedded { world: w.clone() }),
        Arc::new(|| 1),
    );
    let stop = kugetsu_core::interrupt::Interrupt::new();
    std::thread::scope(|s| {
        let handle = s.spawn(|| daemon.run(&stop));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while queue.stats().unwrap().completed < 3 {
            assert!(std::time::Instant::now() < deadline, "{:?}", queue.list().unwrap().items);
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.trigger(0);
        handle.join().unwrap().unwrap();
    });
    let items = queue.list().unwrap().items;
    assert!(items.iter().all(|i| i.status == QueueStatus::Completed));
    assert_eq!(w.agent.max_running.load(Ordering::SeqCst), 1, "limit 1 held, one slot per item");
    assert_eq!(orch.list().unwrap().len(), 5);
}
