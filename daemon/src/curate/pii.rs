//! Personal data in free text: e-mail addresses, payment card numbers and
//! phone numbers, found and replaced by a placeholder. The one place these
//! patterns live, for datasets and conversations alike.
//!
//! The e-mail and phone patterns are those of the example data rule
//! `workflows/scripts/redact.rhai`, so a workflow that moves from the
//! script to the built-in step redacts the same text.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// A kind of personal data Coach can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    /// A payment card number: 13 to 19 digits, spaces or dashes between
    /// them allowed, that passes the Luhn check.
    Card,
}

impl PiiKind {
    /// All kinds, in the order they are looked for: a card number is also
    /// a run of digits the phone pattern matches, so cards go first.
    pub const ALL: [PiiKind; 3] = [PiiKind::Email, PiiKind::Card, PiiKind::Phone];

    /// What replaces it in the text.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "<email>",
            PiiKind::Phone => "<phone>",
            PiiKind::Card => "<card>",
        }
    }

    fn pattern(self) -> &'static Regex {
        static EMAIL: LazyLock<Regex> = LazyLock::new(|| compile(r"[\w.+-]+@[\w-]+\.[\w.]+"));
        static PHONE: LazyLock<Regex> = LazyLock::new(|| compile(r"\+?[0-9][0-9 ()-]{7,}[0-9]"));
        static CARD: LazyLock<Regex> = LazyLock::new(|| compile(r"\b[0-9](?:[ -]?[0-9]){12,18}\b"));
        match self {
            PiiKind::Email => &EMAIL,
            PiiKind::Phone => &PHONE,
            PiiKind::Card => &CARD,
        }
    }
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the built-in patterns are valid")
}

/// One replaced piece of personal data: its kind and where it was, as a
/// byte range of the original text. The value itself is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// `text` with every kind of personal data replaced, and what was replaced.
pub fn redact(text: &str) -> (String, Vec<Redaction>) {
    redact_kinds(text, &PiiKind::ALL)
}

/// `text` with the given kinds of personal data replaced, and what was
/// replaced, in text order. Kinds are looked for in [`PiiKind::ALL`] order,
/// each only in what earlier kinds left, as if each replaced in turn.
pub fn redact_kinds(text: &str, kinds: &[PiiKind]) -> (String, Vec<Redaction>) {
    let mut found: Vec<Redaction> = Vec::new();
    for kind in PiiKind::ALL.into_iter().filter(|k| kinds.contains(k)) {
        let mut new = Vec::new();
        for (gap_start, gap_end) in gaps(text.len(), &found) {
            for m in kind.pattern().find_iter(&text[gap_start..gap_end]) {
                if kind == PiiKind::Card && !luhn(m.as_str()) {
                    continue;
                }
                new.push(Redaction {
                    kind,
                    start: gap_start + m.start(),
                    end: gap_start + m.end(),
                });
            }
        }
        found.extend(new);
        found.sort_by_key(|r| r.start);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in &found {
        out.push_str(&text[at..r.start]);
        out.push_str(r.kind.placeholder());
        at = r.end;
    }
    out.push_str(&text[at..]);
    (out, found)
}

/// The byte ranges of a text `len` bytes long not covered by `taken`
/// (sorted, not overlapping).
fn gaps(len: usize, taken: &[Redaction]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(taken.len() + 1);
    let mut at = 0;
    for r in taken {
        if r.start > at {
            out.push((at, r.start));
        }
        at = r.end;
    }
    if at < len {
        out.push((at, len));
    }
    out
}

/// Whether the digits in `s` pass the Luhn check that card numbers carry.
fn luhn(s: &str) -> bool {
    let sum: u32 = s
        .bytes()
        .filter(u8::is_ascii_digit)
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                d
            } else if d * 2 > 9 {
                d * 2 - 9
            } else {
                d * 2
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(found: &[Redaction]) -> Vec<PiiKind> {
        found.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn each_kind_is_replaced_and_located() {
        let text = "mail jo.b+x@mail.example.org now";
        let (out, found) = redact(text);
        assert_eq!(out, "mail <email> now");
        assert_eq!(
            &text[found[0].start..found[0].end],
            "jo.b+x@mail.example.org"
        );

        let (out, found) = redact("call +44 (20) 7946-0958 today");
        assert_eq!(out, "call <phone> today");
        assert_eq!(kinds(&found), [PiiKind::Phone]);

        let (out, found) = redact("card 4111 1111 1111 1111, or 5500-0000-0000-0004");
        assert_eq!(out, "card <card>, or <card>");
        assert_eq!(kinds(&found), [PiiKind::Card, PiiKind::Card]);
    }

    #[test]
    fn a_number_failing_luhn_is_not_a_card() {
        let (out, found) = redact("ref 4111 1111 1111 1112 please");
        assert_eq!(out, "ref <phone> please");
        assert_eq!(kinds(&found), [PiiKind::Phone]);
    }

    #[test]
    fn only_the_chosen_kinds_are_replaced() {
        let text = "a@b.co or 0161 496 0000";
        assert_eq!(redact_kinds(text, &[PiiKind::Phone]).0, "a@b.co or <phone>");
        assert_eq!(redact_kinds(text, &[]).0, text);
        assert_eq!(
            redact("no personal data here"),
            ("no personal data here".into(), vec![])
        );
    }
}
