//! Priority and escalation: turns what earlier steps found about one query into a level P1–P4,
//! a score in [0, 1], an escalate flag and the reasons behind them. `config` owns the
//! `[priority]` section of `cqr.toml` (types, defaults, validation), `urgency` the deadline and
//! money-lost cue matcher, and `assess` the engine that scores and explains; no I/O happens
//! here. Callers load the configuration, count prior contacts (`analysis::ContactLog`) and
//! write the results. The reference below is docs/priority.md, which `docs_check` holds to the
//! code.
//!
#![doc = include_str!("../../../docs/priority.md")]

mod assess;
mod config;
#[cfg(test)]
mod docs_check;
mod urgency;

// Factor, Level and Reason appear in `Priority`, and EscalateRule, Levels and Weights in
// `PriorityConfig`, so they stay nameable wherever those are.
pub use assess::{explain, Factor, Level, Priority, PriorityEngine, PriorityInput, Reason};
pub use config::{EscalateRule, Levels, PriorityConfig, Weights};
