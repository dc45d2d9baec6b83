//! Wiring for the `eligo` binary that is more than a few lines: flags shared by subcommands and
//! the business-rule stage of `check` and `convert`. The library knows nothing of this.

pub mod rules;
