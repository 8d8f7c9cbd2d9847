//! The review queue's decisions that need no store: how much reviewers
//! agree, and how valuable a label for a message is.

pub mod agreement;

/// The priority of a message in the review queue: the expected value of
/// a label — how unsure the model was (1 − confidence; a fallback or a
/// correction counts as fully unsure) times how often such messages occur
/// (`log2(1 + occurrences)`, so a frequent question outranks a one-off
/// without drowning everything else).
pub fn priority(confidence: Option<f64>, occurrences: u64) -> f64 {
    let uncertainty = 1.0 - confidence.unwrap_or(0.0).clamp(0.0, 1.0);
    uncertainty * (1.0 + occurrences as f64).log2().max(1.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unsure_frequent_message_comes_first() {
        let sure = super::priority(Some(0.95), 1);
        let unsure = super::priority(Some(0.30), 1);
        let unsure_often = super::priority(Some(0.30), 50);
        assert!(unsure > sure);
        assert!(unsure_often > unsure);
        assert_eq!(super::priority(None, 1), 1.0);
    }
}
