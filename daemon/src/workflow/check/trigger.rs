//! `[trigger]`: cron (with its time zone and catch-up), watched paths, the
//! concurrency policy, a condition script, and the durations around them.

use super::{Checker, kind_of};
use crate::config::units;
use std::path::Path;
use toml::Spanned;
use toml::de::DeValue;

const TRIGGER_KEYS: &[&str] = &[
    "cron",
    "timezone",
    "catch_up",
    "watch",
    "debounce",
    "on",
    "concurrency",
    "when",
    "check_every",
    "min_interval",
];

impl Checker<'_> {
    pub(super) fn trigger(
        &mut self,
        t: &Spanned<DeValue<'_>>,
        wf_dir: &Path,
    ) -> crate::workflow::trigger::Trigger {
        use crate::workflow::trigger::{self, CatchUp, Concurrency, Cron, Trigger};
        let mut out = Trigger {
            debounce: trigger::DEFAULT_DEBOUNCE,
            check_every: trigger::DEFAULT_CHECK_EVERY,
            min_interval: trigger::DEFAULT_MIN_INTERVAL,
            ..Trigger::default()
        };
        let DeValue::Table(table) = t.get_ref() else {
            self.error(t.span(), "`trigger` must be a table");
            return out;
        };
        self.unknown_keys(table, TRIGGER_KEYS, "`trigger`");
        let timezone = match table.get("timezone") {
            None => chrono_tz::UTC,
            Some(v) => match self.string(v, "`trigger.timezone`") {
                None => chrono_tz::UTC,
                Some(name) => name.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                    self.error(
                        v.span(),
                        format!("unknown time zone `{name}`; use an IANA name such as `UTC` or `Europe/Berlin`"),
                    );
                    chrono_tz::UTC
                }),
            },
        };
        if let Some(c) = table.get("cron")
            && let Some(expr) = self.string(c, "`trigger.cron`")
        {
            match trigger::parse_cron(&expr) {
                Ok(_) => out.cron = Some(Cron { expr, timezone }),
                Err(e) => self.error(c.span(), e),
            }
        }
        let mut choice = |key: &str, allowed: &[&str]| -> Option<String> {
            let v = table.get(key)?;
            let s = self.string(v, &format!("`trigger.{key}`"))?;
            if allowed.contains(&s.as_str()) {
                Some(s)
            } else {
                self.error(
                    v.span(),
                    format!(
                        "`trigger.{key}` is `{s}`; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
                None
            }
        };
        out.catch_up = match choice("catch_up", &["once", "skip"]).as_deref() {
            Some("skip") => CatchUp::Skip,
            _ => CatchUp::Once,
        };
        out.concurrency = match choice("concurrency", &["allow", "forbid", "queue"]).as_deref() {
            Some("allow") => Concurrency::Allow,
            Some("forbid") => Concurrency::Forbid,
            _ => Concurrency::Queue,
        };
        for (key, slot) in [
            ("debounce", &mut out.debounce),
            ("check_every", &mut out.check_every),
            ("min_interval", &mut out.min_interval),
        ] {
            if let Some(v) = table.get(key)
                && let Some(s) = self.string(v, &format!("`trigger.{key}`"))
            {
                match units::parse_duration(&s) {
                    Ok(d) => *slot = d,
                    Err(e) => self.error(v.span(), format!("`trigger.{key}`: {e}")),
                }
            }
        }
        if let Some(v) = table.get("when") {
            out.when = self.script_ref(v, crate::script::Hook::Trigger, wf_dir, true);
        }
        for key in ["watch", "on"] {
            if let Some(v) = table.get(key) {
                match v.get_ref() {
                    DeValue::Array(a) => {
                        for x in a.iter() {
                            let Some(s) = self.string(x, &format!("each entry of `trigger.{key}`"))
                            else {
                                continue;
                            };
                            if key == "on" {
                                // Better refused than accepted and never
                                // fired: no part of Coach emits named
                                // events yet.
                                self.error(
                                    x.span(),
                                    format!("`trigger.on = [\"{s}\"]`: event triggers are not available in this version of Coach; use `cron` or `watch`"),
                                );
                                out.on.push(s);
                                continue;
                            }
                            match crate::config::expand_env(&s) {
                                Ok(p) => {
                                    let p = Path::new(&p);
                                    out.watch.push(if p.is_absolute() {
                                        p.to_path_buf()
                                    } else {
                                        wf_dir.join(p)
                                    });
                                }
                                Err(e) => self.error(x.span(), e),
                            }
                        }
                    }
                    other => self.error(
                        v.span(),
                        format!(
                            "`trigger.{key}` must be an array of strings, found {}",
                            kind_of(other)
                        ),
                    ),
                }
            }
        }
        out
    }
}
