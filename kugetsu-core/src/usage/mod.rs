//! What agent turns cost: the tokens and dollars a driver reads from its agent's own reports
//! ([`TurnUsage`], in a [`crate::agent::RunReport`] and, step by step, in
//! [`crate::agent::AgentEvent::Usage`]), their sums over an issue ([`UsageTotals`], in its
//! session file) and over a day ([`ledger`]), and the budgets that stop spending ([`budget`]).
//!
//! A cost the agent did not report is unknown, never 0: a turn without a report counts in
//! [`UsageTotals::unknown_turns`] and shows as `unknown`.

pub mod budget;
pub mod ledger;

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of US dollars. Never NaN (what no JSON number is, and [`Usd::new`] refuses), so
/// it compares as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Usd(f64);

// Sound: NaN, the one f64 that is not equal to itself, is never held.
impl Eq for Usd {}

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(0.0);

    /// `value` dollars, `None` for NaN, an infinity or a negative amount.
    pub fn new(value: f64) -> Option<Usd> {
        (value.is_finite() && value >= 0.0).then_some(Usd(value))
    }

    /// The amount.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl std::ops::Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0 + rhs.0)
    }
}

impl fmt::Display for Usd {
    /// `$5.00` from a cent up; below it, enough digits to be seen (`$0.0042`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0.0 || self.0 >= 0.01 {
            write!(f, "${:.2}", self.0)
        } else {
            write!(f, "${:.4}", self.0)
        }
    }
}

/// Tokens of one or more model calls. Reasoning tokens, which models bill as output, count in
/// `output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Prompt tokens not read from the provider's cache.
    #[serde(default)]
    pub input: u64,
    /// Generated tokens (reasoning included).
    #[serde(default)]
    pub output: u64,
    /// Prompt tokens read from the provider's cache.
    #[serde(default)]
    pub cache_read: u64,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    pub cache_write: u64,
}

impl Tokens {
    /// The sum of both.
    pub fn plus(self, o: Tokens) -> Tokens {
        Tokens {
            input: self.input.saturating_add(o.input),
            output: self.output.saturating_add(o.output),
            cache_read: self.cache_read.saturating_add(o.cache_read),
            cache_write: self.cache_write.saturating_add(o.cache_write),
        }
    }

    /// Every token counted.
    pub fn total(self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tokens input {}, output {}, cache read {}, cache write {}",
            self.input, self.output, self.cache_read, self.cache_write
        )
    }
}

/// What one turn (or one step of it) used, as the agent reported it. A part the agent did not
/// report is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnUsage {
    /// Dollars, as the agent priced them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<Usd>,
    /// Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

impl TurnUsage {
    /// The sum of both: a part is known when either knows it.
    pub fn plus(self, o: TurnUsage) -> TurnUsage {
        let cost_usd = match (self.cost_usd, o.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        let tokens = match (self.tokens, o.tokens) {
            (Some(a), Some(b)) => Some(a.plus(b)),
            (a, b) => a.or(b),
        };
        TurnUsage { cost_usd, tokens }
    }

    /// Whether the agent reported nothing.
    pub fn is_unknown(&self) -> bool {
        self.cost_usd.is_none() && self.tokens.is_none()
    }

    /// `cost $0.0123, tokens input 10, output 2, cache read 0, cache write 0`, `cost unknown`
    /// for a part not reported.
    pub fn describe(&self) -> String {
        let tokens = self.tokens.map_or_else(|| "tokens unknown".to_owned(), |t| t.to_string());
        format!("cost {}, {tokens}", cost_text(self.cost_usd))
    }
}

/// `$0.0123`, or `unknown`.
pub fn cost_text(cost: Option<Usd>) -> String {
    cost.map_or_else(|| "unknown".to_owned(), |c| c.to_string())
}

/// The sums over several turns (an issue's, a day's). A turn whose agent reported no cost
/// adds to `unknown_turns`, not to `cost_usd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Dollars of the turns that reported a cost; `None` while none has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<Usd>,
    /// Tokens of the turns that reported them.
    #[serde(default)]
    pub tokens: Tokens,
    /// Turns counted.
    #[serde(default)]
    pub turns: u32,
    /// Turns whose agent reported no cost.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_turns: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl UsageTotals {
    /// Counts one more turn that used `usage` (`None`: nothing reported).
    pub fn add_turn(&mut self, usage: Option<&TurnUsage>) {
        self.turns = self.turns.saturating_add(1);
        let usage = usage.copied().unwrap_or_default();
        match usage.cost_usd {
            Some(c) => self.cost_usd = Some(self.cost_usd.unwrap_or(Usd::ZERO) + c),
            None => self.unknown_turns = self.unknown_turns.saturating_add(1),
        }
        if let Some(t) = usage.tokens {
            self.tokens = self.tokens.plus(t);
        }
    }

    /// Adds other totals.
    pub fn merge(&mut self, o: &UsageTotals) {
        self.cost_usd = match (self.cost_usd, o.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.tokens = self.tokens.plus(o.tokens);
        self.turns = self.turns.saturating_add(o.turns);
        self.unknown_turns = self.unknown_turns.saturating_add(o.unknown_turns);
    }

    /// The dollars known so far (0 when none is: what a budget compares).
    pub fn spent(&self) -> Usd {
        self.cost_usd.unwrap_or(Usd::ZERO)
    }

    /// `$1.23`, `$1.23 + 2 turns unknown`, or `unknown` (no turn reported a cost).
    pub fn cost_text(&self) -> String {
        match (self.cost_usd, self.unknown_turns) {
            (None, 0) if self.turns == 0 => "$0.00".into(),
            (None, _) => "unknown".into(),
            (Some(c), 0) => c.to_string(),
            (Some(c), 1) => format!("{c} + 1 turn unknown"),
            (Some(c), n) => format!("{c} + {n} turns unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_never_zero_and_sums_keep_what_is_known() {
        let mut totals = UsageTotals::default();
        totals.add_turn(None);
        assert_eq!(totals.cost_text(), "unknown");
        assert_eq!(totals.cost_usd, None);
        let step = TurnUsage {
            cost_usd: Usd::new(0.25),
            tokens: Some(Tokens { input: 10, output: 2, cache_read: 1, cache_write: 0 }),
        };
        totals.add_turn(Some(&step.plus(step)));
        assert_eq!(totals.cost_text(), "$0.50 + 1 turn unknown");
        assert_eq!(totals.tokens.input, 20);
        assert_eq!(totals.turns, 2);
        assert_eq!(TurnUsage::default().describe(), "cost unknown, tokens unknown");
        assert_eq!(Usd::new(0.0042).unwrap().to_string(), "$0.0042");
        assert_eq!(Usd::new(f64::NAN), None);
        // An old record without the fields reads as nothing known.
        let old: UsageTotals = serde_json::from_str("{}").unwrap();
        assert_eq!(old, UsageTotals::default());
    }
}
