//! Wiring for the `eligo` binary that is more than a few lines. The library knows nothing of
//! this: `rules` holds the flags and business-rule stage shared by `check` and `convert`; `run`
//! holds `eligo run` and the lifecycle commands (`hold`, `confirm`, `fhs`, `transactions`,
//! `runs`).

pub mod rules;
pub mod run;
