//! The orchestration's side of provider pauses ([`crate::pause`]): a turn waits while its
//! provider is paused, as it waits for a slot, and a turn the provider refused pauses it.

use super::*;
use crate::pause::{ProviderLimit, holding};

impl Orchestrator {
    /// Waits while the agent's provider is paused, as long as the settings let a turn wait
    /// for a slot, in short steps so that a stop request ends the wait at once. Pauses whose
    /// time has come are removed on the way. A store that cannot be read holds nothing back:
    /// a turn the provider still refuses pauses it again.
    pub(super) fn wait_for_provider(&self) -> Result<(), OrchestratorError> {
        const STEP: Duration = Duration::from_millis(250);
        let interrupt = &self.settings.interrupt;
        let provider = self.agent.provider();
        let deadline = Instant::now().checked_add(self.settings.slot_wait);
        loop {
            if interrupt.is_triggered() {
                return Err(OrchestratorError::Interrupted { signal: interrupt.describe() });
            }
            let now = self.clock.now();
            let list = match self.pauses.list() {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the provider pauses");
                    return Ok(());
                }
            };
            let Some(pause) = holding(&list, provider.as_deref(), now) else {
                if let Err(e) = self.pauses.resume(None, now, true) {
                    tracing::warn!(error = %e, "cannot remove the provider pauses that ended");
                }
                return Ok(());
            };
            let left =
                deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Err(OrchestratorError::ProviderPaused { pause: Box::new(pause.clone()) });
            }
            std::thread::sleep(left.min(STEP));
        }
    }

    /// Pauses the provider that refused a turn (told once by whoever keeps the pauses).
    pub(super) fn pause_provider(&self, limit: &ProviderLimit) {
        if let Err(e) = self.pauses.pause(limit, self.clock.now()) {
            tracing::warn!(error = %e, provider = %limit.provider, "cannot record the provider's pause");
        }
    }
}
