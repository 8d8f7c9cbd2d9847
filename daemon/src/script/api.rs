//! What a script can call beyond the Rhai language: statistics, time and
//! text helpers. Every function registered here is documented in
//! `docs/scripting.md` (a test checks it).

use crate::core::sync::Lock;
use regex::Regex;
use rhai::{Array, Dynamic, Engine, EvalAltResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

type Fallible<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(message: String) -> Fallible<T> {
    Err(message.into())
}

/// The numbers of an array (integers and floats).
fn numbers(name: &str, a: &Array) -> Fallible<Vec<f64>> {
    let mut out = Vec::with_capacity(a.len());
    for (i, v) in a.iter().enumerate() {
        if let Ok(f) = v.as_float() {
            out.push(f);
        } else if let Ok(n) = v.as_int() {
            out.push(n as f64);
        } else {
            return fail(format!(
                "{name}: item {i} is {}, not a number",
                v.type_name()
            ));
        }
    }
    if out.is_empty() {
        return fail(format!("{name} of an empty array"));
    }
    Ok(out)
}

fn percentile_of(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    // Linear interpolation between closest ranks.
    let rank = (p / 100.0) * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Compiled patterns, kept: scripts call the same few many times. Shared
/// behind an `Arc`: a cloned `Regex` would build its match cache anew.
fn pattern(p: &str) -> Fallible<Arc<Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(r) = cache.locked().get(p) {
        return Ok(r.clone());
    }
    let r = Arc::new(
        regex::RegexBuilder::new(p)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("pattern `{p}`: {e}"))?,
    );
    let mut c = cache.locked();
    if c.len() > 256 {
        c.clear();
    }
    c.insert(p.to_owned(), r.clone());
    Ok(r)
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Register the helpers on `e`.
pub fn register(e: &mut Engine) {
    e.register_fn("mean", |a: Array| -> Fallible<f64> {
        let v = numbers("mean", &a)?;
        Ok(v.iter().sum::<f64>() / v.len() as f64)
    });
    e.register_fn("median", |a: Array| -> Fallible<f64> {
        Ok(percentile_of(numbers("median", &a)?, 50.0))
    });
    e.register_fn("percentile", |a: Array, p: f64| -> Fallible<f64> {
        if !(0.0..=100.0).contains(&p) {
            return fail(format!("percentile {p} is not between 0 and 100"));
        }
        Ok(percentile_of(numbers("percentile", &a)?, p))
    });
    e.register_fn("percentile", |a: Array, p: i64| -> Fallible<f64> {
        if !(0..=100).contains(&p) {
            return fail(format!("percentile {p} is not between 0 and 100"));
        }
        Ok(percentile_of(numbers("percentile", &a)?, p as f64))
    });
    e.register_fn("stddev", |a: Array| -> Fallible<f64> {
        let v = numbers("stddev", &a)?;
        let m = v.iter().sum::<f64>() / v.len() as f64;
        Ok((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
    });
    e.register_fn("sum", |a: Array| -> Fallible<f64> {
        Ok(numbers("sum", &a)?.iter().sum())
    });
    e.register_fn("min_of", |a: Array| -> Fallible<f64> {
        Ok(numbers("min_of", &a)?
            .into_iter()
            .fold(f64::INFINITY, f64::min))
    });
    e.register_fn("max_of", |a: Array| -> Fallible<f64> {
        Ok(numbers("max_of", &a)?
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max))
    });
    e.register_fn("now", now);
    e.register_fn("hours_since", |t: f64| (now() - t) / 3600.0);
    e.register_fn("days_since", |t: f64| (now() - t) / 86400.0);
    e.register_fn("parse_time", |s: &str| -> Fallible<f64> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros() as f64 / 1e6)
            .or_else(|e| fail(format!("`{s}` is not an RFC 3339 time: {e}")))
    });
    e.register_fn("matches", |text: &str, p: &str| -> Fallible<bool> {
        Ok(pattern(p)?.is_match(text))
    });
    e.register_fn(
        "redact",
        |text: &str, p: &str, with: &str| -> Fallible<String> {
            Ok(pattern(p)?.replace_all(text, with).into_owned())
        },
    );
    e.register_fn("word_count", |text: &str| {
        text.split_whitespace().count() as i64
    });
    // An experiment's decisions (see `hooks::decide`).
    e.register_fn("promote", |arm: &str, reason: &str| {
        decision("promote", Some(arm), reason)
    });
    e.register_fn("rollback", |reason: &str| {
        decision("rollback", None, reason)
    });
    e.register_fn("keep_running", |reason: &str| {
        decision("continue", None, reason)
    });
}

fn decision(what: &str, arm: Option<&str>, reason: &str) -> rhai::Map {
    let mut m = rhai::Map::new();
    m.insert("decision".into(), what.into());
    m.insert(
        "arm".into(),
        arm.map_or(Dynamic::UNIT, |a| Dynamic::from(a.to_owned())),
    );
    m.insert("reason".into(), reason.into());
    m
}
