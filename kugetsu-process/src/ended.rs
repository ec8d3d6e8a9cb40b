//! What an ended run's [`Ended`] says in kugetsu's words, for the part every driver shares: the
//! ends kugetsu itself brought about (a limit, a stop, a cut) and a provider's refusal. How a run
//! that exited by itself went only its driver can read from what the agent printed.

use std::process::ExitStatus;

use kugetsu_core::agent::RunOutcome;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::pause::ProviderLimit;

use crate::supervise::Ended;

impl Ended {
    /// The outcome of a run that ended this way, or, for a run that exited by itself, its exit
    /// status for the driver to classify. A provider refusal seen in the run (`limited`) makes
    /// any end but a stop `rate_limited`: the run was cut for it, or refused on its way out.
    /// `last_tool` names the last finished tool call, for a hung run's report.
    pub fn outcome(
        self,
        stop: &Interrupt,
        limited: Option<&ProviderLimit>,
        last_tool: impl FnOnce() -> Option<String>,
    ) -> Result<RunOutcome, ExitStatus> {
        if let Some(limit) = limited
            && self != Ended::Interrupted
        {
            return Ok(RunOutcome::RateLimited(limit.clone()));
        }
        match self {
            Ended::Cut => Ok(RunOutcome::Failed { message: "the run was cut short".into() }),
            Ended::Interrupted => Ok(RunOutcome::Interrupted { signal: stop.describe() }),
            Ended::TimedOut(d) => Ok(RunOutcome::TimedOut { after_secs: d.as_secs() }),
            Ended::Hung(d) => Ok(RunOutcome::Hung {
                silent_secs: d.as_secs(),
                processes_idle: crate::activity_is_watched(),
                last_tool: last_tool(),
            }),
            Ended::Exited(status) => Err(status),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use kugetsu_core::pause::LimitKind;

    use super::*;

    fn limit() -> ProviderLimit {
        ProviderLimit {
            provider: "mock".into(),
            kind: LimitKind::RateLimit,
            until: None,
            message: "slow down".into(),
        }
    }

    #[test]
    fn a_refusal_wins_over_every_end_but_a_stop() {
        let stop = Interrupt::new();
        let l = limit();
        for ended in [
            Ended::Cut,
            Ended::Hung(Duration::from_secs(3)),
            Ended::Exited(ExitStatus::from_raw(0)),
        ] {
            assert_eq!(
                ended.outcome(&stop, Some(&l), || None),
                Ok(RunOutcome::RateLimited(l.clone()))
            );
        }
        let out = Ended::Interrupted.outcome(&stop, Some(&l), || None).unwrap();
        assert!(matches!(out, RunOutcome::Interrupted { .. }), "{out:?}");
    }

    #[test]
    fn limits_are_kugetsus_and_an_exit_is_the_drivers() {
        let stop = Interrupt::new();
        let hung =
            Ended::Hung(Duration::from_secs(61)).outcome(&stop, None, || Some("bash".into()));
        match hung.unwrap() {
            RunOutcome::Hung { silent_secs, last_tool, .. } => {
                assert_eq!((silent_secs, last_tool.as_deref()), (61, Some("bash")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Ended::TimedOut(Duration::from_secs(9)).outcome(&stop, None, || None),
            Ok(RunOutcome::TimedOut { after_secs: 9 })
        );
        let status = ExitStatus::from_raw(256);
        assert_eq!(Ended::Exited(status).outcome(&stop, None, || None), Err(status));
    }
}
