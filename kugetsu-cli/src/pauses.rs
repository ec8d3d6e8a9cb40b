//! Provider pauses as the command line keeps them (see [`kugetsu_core::pause`]): in the state
//! directory, told once through the notifications (`paused` when a provider is first paused,
//! `resumed` when its pause is removed, by its time or by `kugetsu queue resume`), and the
//! daemon's gate that holds dispatch while the agent's provider is paused.

use std::sync::Arc;

use kugetsu_core::StateDir;
use kugetsu_core::config::Config;
use kugetsu_core::notify::NotificationType;
use kugetsu_core::pause::{FilePauses, Pause, PauseError, Pauses, ProviderLimit, holding};
use kugetsu_queue::{GateFn, Held};
use time::OffsetDateTime;

use crate::context::Ctx;

/// Where the pauses are kept: the shared queue's server when there is one (every host must
/// see them), else the state directory.
pub fn store(ctx: &Ctx, config: &Config) -> Arc<dyn Pauses> {
    match crate::queue_backend::backend(ctx, config) {
        Ok(kugetsu_queue::Backend { pauses: Some(shared), .. }) => shared,
        _ => Arc::new(FilePauses::new(&ctx.state)),
    }
}

/// The pauses of [`store`], telling the notifications.
pub fn pauses(ctx: &Ctx, config: &Config) -> Arc<dyn Pauses> {
    Arc::new(Told { inner: store(ctx, config), state: ctx.state.clone(), config: config.clone() })
}

/// Pauses that record a notification for each provider paused or resumed.
struct Told {
    inner: Arc<dyn Pauses>,
    state: StateDir,
    config: Config,
}

impl Told {
    fn tell(&self, kind: &str, message: &str) {
        // A foreground command posts it when it ends; the daemon's sender thread does there.
        crate::notifications::record_in_command(
            &self.state,
            Some(&self.config),
            NotificationType::Other(kind.into()),
            message,
            None,
        );
    }
}

impl Pauses for Told {
    fn list(&self) -> Result<Vec<Pause>, PauseError> {
        self.inner.list()
    }

    fn pause(&self, limit: &ProviderLimit, now: OffsetDateTime) -> Result<bool, PauseError> {
        let new = self.inner.pause(limit, now)?;
        if new {
            let said = self.inner.list()?;
            let pause = said.iter().find(|p| p.limit.provider == limit.provider);
            let what = pause.map_or_else(|| limit.describe(), Pause::describe);
            self.tell("paused", &format!("dispatch {what}: {}", limit.message));
        }
        Ok(new)
    }

    fn resume(
        &self,
        provider: Option<&str>,
        now: OffsetDateTime,
        only_over: bool,
    ) -> Result<Vec<Pause>, PauseError> {
        let gone = self.inner.resume(provider, now, only_over)?;
        for p in &gone {
            let how = if only_over { "its pause ended" } else { "resumed by hand" };
            self.tell("resumed", &format!("dispatch resumed for {} ({how})", p.limit.provider));
        }
        Ok(gone)
    }
}

/// The daemon's gate: holds dispatch while `provider` (`None`: any) is paused, and removes
/// the pauses whose time has come (which tells `resumed`).
pub fn gate(pauses: Arc<dyn Pauses>, provider: Option<String>) -> GateFn {
    Arc::new(move || {
        let now = OffsetDateTime::now_utc();
        if let Err(e) = pauses.resume(None, now, true) {
            tracing::warn!(error = %e, "cannot remove the provider pauses that ended");
        }
        let list = pauses.list().ok()?;
        let p = holding(&list, provider.as_deref(), now)?;
        Some(Held { reason: p.describe(), until: p.limit.until })
    })
}

/// One line per pause in force, for `status` and `queue list`.
pub fn lines(pauses: &dyn Pauses) -> Vec<String> {
    let now = OffsetDateTime::now_utc();
    let list = pauses.list().unwrap_or_default();
    list.iter().filter(|p| !p.is_over(now)).map(Pause::describe).collect()
}
