//! The transaction lifecycle the plan's documents define. A change record becomes a
//! transaction when a run accepts it; its status then moves only along these edges:
//!
//! ```text
//! Pending ──► Submitted ──► Completed            (batch written; administrative system confirms)
//! Incomplete ──► Pending                           (the missing subscriber data arrives)
//! PendingFhs ──► Pending                           (the Family Health Statement is recorded)
//! PendingFhs ──► Withdrawn                         (no statement within the configured days)
//! ```

use serde::{Deserialize, Serialize};

/// A transaction's status, spelled as the plan's documents spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TransactionStatus {
    #[serde(rename = "Pending")]
    Pending,
    #[serde(rename = "Submitted")]
    Submitted,
    #[serde(rename = "Completed")]
    Completed,
    /// A subscriber add missing data the administrative system needs.
    #[serde(rename = "Incomplete")]
    Incomplete,
    /// A Connecticut small-group add waiting for its Family Health Statement.
    #[serde(rename = "Pending - awaiting Family Health Statement")]
    PendingFhs,
    #[serde(rename = "Withdrawn")]
    Withdrawn,
}

impl TransactionStatus {
    pub const ALL: [TransactionStatus; 6] = [
        TransactionStatus::Pending,
        TransactionStatus::Submitted,
        TransactionStatus::Completed,
        TransactionStatus::Incomplete,
        TransactionStatus::PendingFhs,
        TransactionStatus::Withdrawn,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TransactionStatus::Pending => "Pending",
            TransactionStatus::Submitted => "Submitted",
            TransactionStatus::Completed => "Completed",
            TransactionStatus::Incomplete => "Incomplete",
            TransactionStatus::PendingFhs => "Pending - awaiting Family Health Statement",
            TransactionStatus::Withdrawn => "Withdrawn",
        }
    }

    /// Parses the plan's spelling (case-insensitive; `pending-fhs` is accepted too).
    pub fn parse(s: &str) -> Option<TransactionStatus> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("pending-fhs") {
            return Some(TransactionStatus::PendingFhs);
        }
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(t))
    }

    /// Whether the lifecycle allows moving from `self` to `to`.
    pub fn can_become(self, to: TransactionStatus) -> bool {
        use TransactionStatus::*;
        matches!(
            (self, to),
            (Pending, Submitted)
                | (Submitted, Completed)
                | (Incomplete, Pending)
                | (PendingFhs, Pending)
                | (PendingFhs, Withdrawn)
        )
    }

    /// Statuses whose change is not yet sent to the administrative system.
    pub fn is_held(self) -> bool {
        matches!(
            self,
            TransactionStatus::Incomplete | TransactionStatus::PendingFhs
        )
    }
}

impl std::fmt::Display for TransactionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::TransactionStatus::*;
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for s in TransactionStatus::ALL {
            assert_eq!(TransactionStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(TransactionStatus::parse("pending-fhs"), Some(PendingFhs));
        assert_eq!(TransactionStatus::parse("nope"), None);
    }

    #[test]
    fn only_documented_transitions_are_allowed() {
        assert!(Pending.can_become(Submitted));
        assert!(Submitted.can_become(Completed));
        assert!(PendingFhs.can_become(Withdrawn));
        assert!(PendingFhs.can_become(Pending));
        assert!(Incomplete.can_become(Pending));
        assert!(!Completed.can_become(Pending));
        assert!(!Withdrawn.can_become(Pending));
        assert!(!Submitted.can_become(Withdrawn));
    }
}
