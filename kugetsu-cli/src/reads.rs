//! What the reading commands print with `--json` and the dashboard serves: each read is one
//! function returning data, which both serialize as it is, so the command line and the API
//! cannot drift apart. Text output is each command's own business.

use serde::{Serialize, Serializer};

use kugetsu_core::notify::{Notification, Notifications};
use kugetsu_core::orchestrator::{ListEntry, Status};
use kugetsu_core::queue::{QueueItem, TaskQueue};
use kugetsu_core::usage::UsageTotals;
use kugetsu_core::usage::ledger::{Ledger, utc_day};

use crate::context::Ctx;
use crate::error::CliError;

/// `list`: every tracked session.
pub fn sessions(ctx: &Ctx) -> Result<Vec<ListEntry>, CliError> {
    Ok(ctx.orchestrator()?.list()?)
}

/// `status`: the spec's word, and with a shared queue which host this is (its issues'
/// sessions live here).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// `ok`, `kugetsu_not_initialized`, `base_session_missing` or `pm_agent_missing`.
    #[serde(serialize_with = "status_word")]
    pub status: Status,
    /// This host's name in a shared queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What this host's turns cost today (UTC), from the spending ledger; absent while no turn
    /// ran this month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub today: Option<UsageTotals>,
    /// What they cost this month (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub this_month: Option<UsageTotals>,
    /// `KUGETSU_DAILY_BUDGET_USD`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_budget_usd: Option<kugetsu_core::usage::Usd>,
    /// The provider pauses in force (`paused until 14:05 UTC (mock: rate limit)`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paused: Vec<String>,
}

fn status_word<S: Serializer>(status: &Status, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(status.as_str())
}

/// Reads [`StatusView`] from the state files (and the config, for the host).
pub fn status(ctx: &Ctx) -> Result<StatusView, CliError> {
    let status = ctx.orchestrator()?.status()?;
    let day = utc_day(time::OffsetDateTime::now_utc());
    let ledger = Ledger::new(&ctx.state);
    let this_month = Some(ledger.month(day)?).filter(|m| m.turns > 0);
    let today = this_month.map(|_| ledger.day(day)).transpose()?;
    Ok(StatusView {
        status,
        host: crate::queue_backend::shared_host(ctx)?,
        today,
        this_month,
        daily_budget_usd: ctx.config()?.daily_budget_usd,
        paused: paused(ctx),
    })
}

/// The provider pauses in force, one line each (see [`crate::pauses`]).
pub fn paused(ctx: &Ctx) -> Vec<String> {
    let Ok(config) = ctx.config() else { return Vec::new() };
    crate::pauses::lines(crate::pauses::store(ctx, &config).as_ref())
}

/// `queue list`: the items, and the files that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    /// Readable items, oldest first.
    pub items: Vec<QueueItem>,
    /// What was wrong with each unreadable item file.
    pub problems: Vec<String>,
    /// The provider pauses that hold dispatch back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paused: Vec<String>,
}

/// Reads [`QueueView`].
pub fn queue(ctx: &Ctx, queue: &dyn TaskQueue) -> Result<QueueView, CliError> {
    let listing = queue.list()?;
    Ok(QueueView { items: listing.items, problems: listing.problems, paused: paused(ctx) })
}

/// `notify list`: the notifications asked for, and how many entries could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationsView {
    /// Oldest first.
    pub notifications: Vec<Notification>,
    /// Entries that could not be read.
    pub unreadable: usize,
}

/// Reads [`NotificationsView`]: the unread ones, or all with `all`.
pub fn notifications(notes: &Notifications, all: bool) -> Result<NotificationsView, CliError> {
    let listing = notes.list(!all)?;
    Ok(NotificationsView { notifications: listing.notifications, unreadable: listing.unreadable })
}
