//! Bridges gitoxide's progress trees to kugetsu's [`WorktreeProgress`].
//!
//! gix reports progress through `prodash`-style trees whose nodes must be `Send + Sync + 'static`
//! and may be updated from several threads at once (parallel checkout, pack indexing), while a
//! [`WorktreeProgress`] is a plain `&mut dyn` owned by the caller's thread. So the gix operation
//! runs on a scoped worker thread with a tree of atomic counters, and the calling thread polls the
//! counter of the one node that matters for the phase (files checked out, objects indexed) and
//! forwards it. The caller's sink is only ever touched from its own thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use gix::progress::{Count, Id, MessageLevel, NestedProgress, Progress, Step, StepShared, Unit};
use kugetsu_core::worktree::{WorktreePhase, WorktreeProgress};

/// How often the calling thread forwards counters while gix works.
const POLL: Duration = Duration::from_millis(50);
/// After this many polls without a known total, the phase is announced without one.
const POLLS_BEFORE_UNKNOWN_TOTAL: u32 = 4;
const NO_MAX: usize = usize::MAX;

struct NodeState {
    name: Mutex<String>,
    max: AtomicUsize,
    step: StepShared,
}

/// Every node created under one root, so the poller can find the one it watches.
#[derive(Clone, Default)]
struct Registry(Arc<Mutex<Vec<Arc<NodeState>>>>);

impl Registry {
    fn register(&self, name: String) -> Arc<NodeState> {
        let state = Arc::new(NodeState {
            name: Mutex::new(name),
            max: AtomicUsize::new(NO_MAX),
            step: Arc::new(AtomicUsize::new(0)),
        });
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&state));
        state
    }

    /// `(total, done)` of the most recently created node named `name`.
    fn read(&self, name: &str) -> Option<(Option<u64>, u64)> {
        let nodes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .iter()
            .rev()
            .find(|n| *n.name.lock().unwrap_or_else(PoisonError::into_inner) == name)
            .map(|n| {
                let max = n.max.load(Ordering::Relaxed);
                ((max != NO_MAX).then_some(max as u64), n.step.load(Ordering::Relaxed) as u64)
            })
    }
}

/// A gix progress node backed by atomics; see the module docs.
pub(crate) struct Node {
    state: Arc<NodeState>,
    registry: Registry,
    unit: Option<Unit>,
}

impl Node {
    fn root(registry: Registry) -> Self {
        let state = registry.register(String::new());
        Node { state, registry, unit: None }
    }
}

impl Count for Node {
    fn set(&self, step: Step) {
        self.state.step.store(step, Ordering::Relaxed);
    }
    fn step(&self) -> Step {
        self.state.step.load(Ordering::Relaxed)
    }
    fn inc_by(&self, step: Step) {
        self.state.step.fetch_add(step, Ordering::Relaxed);
    }
    fn counter(&self) -> StepShared {
        Arc::clone(&self.state.step)
    }
}

impl Progress for Node {
    fn init(&mut self, max: Option<Step>, unit: Option<Unit>) {
        self.state.max.store(max.unwrap_or(NO_MAX), Ordering::Relaxed);
        self.state.step.store(0, Ordering::Relaxed);
        self.unit = unit;
    }
    fn unit(&self) -> Option<Unit> {
        self.unit.clone()
    }
    fn max(&self) -> Option<Step> {
        let max = self.state.max.load(Ordering::Relaxed);
        (max != NO_MAX).then_some(max)
    }
    fn set_max(&mut self, max: Option<Step>) -> Option<Step> {
        let prev = self.state.max.swap(max.unwrap_or(NO_MAX), Ordering::Relaxed);
        (prev != NO_MAX).then_some(prev)
    }
    fn set_name(&mut self, name: String) {
        *self.state.name.lock().unwrap_or_else(PoisonError::into_inner) = name;
    }
    fn name(&self) -> Option<String> {
        Some(self.state.name.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }
    fn id(&self) -> Id {
        gix::progress::UNKNOWN
    }
    fn message(&self, level: MessageLevel, message: String) {
        tracing::debug!(?level, %message, "git progress");
    }
}

impl NestedProgress for Node {
    type SubProgress = Node;
    fn add_child(&mut self, name: impl Into<String>) -> Self::SubProgress {
        Node {
            state: self.registry.register(name.into()),
            registry: self.registry.clone(),
            unit: None,
        }
    }
    fn add_child_with_id(&mut self, name: impl Into<String>, _id: Id) -> Self::SubProgress {
        self.add_child(name)
    }
}

/// Runs `work` on a scoped thread with a fresh progress tree, forwarding the node named `watch`
/// to `sink` as `phase` until `work` returns.
pub(crate) fn run<T: Send>(
    sink: &mut dyn WorktreeProgress,
    phase: WorktreePhase,
    watch: &str,
    work: impl FnOnce(Node) -> T + Send,
) -> T {
    let registry = Registry::default();
    let root = Node::root(registry.clone());
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let handle = scope.spawn(move || {
            let out = work(root);
            // The receiver only goes away once we return; a failed send just ends the polling.
            let _ = tx.send(());
            out
        });
        let mut announced = false;
        let mut polls = 0u32;
        let mut last_done = None;
        loop {
            let finished = !matches!(rx.recv_timeout(POLL), Err(mpsc::RecvTimeoutError::Timeout));
            polls += 1;
            let reading = registry.read(watch);
            if !announced {
                let total = reading.and_then(|(total, _)| total);
                if total.is_some() || finished || polls >= POLLS_BEFORE_UNKNOWN_TOTAL {
                    sink.phase(phase, total);
                    announced = true;
                }
            }
            if announced
                && let Some((_, done)) = reading
                && last_done != Some(done)
            {
                sink.advance(done);
                last_done = Some(done);
            }
            if finished {
                break;
            }
        }
        sink.finish();
        match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
