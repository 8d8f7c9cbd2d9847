//! Request bodies checked against the schemas the OpenAPI document
//! publishes, at the edge, before any handler sees them: the bounds a
//! client reads in `/api/v1/openapi.json` are the bounds it meets, and a
//! bound added to the document is enforced without more code.
//!
//! The subset of JSON Schema the document uses: `type` (one or a list),
//! `enum`, strings' `minLength`/`maxLength` (characters), `pattern`,
//! `format: date-time` with `x-coach-years: [first, last]`, numbers'
//! `minimum`/`maximum`, arrays' `minItems`/`maxItems`/`items`, objects'
//! `required`, `properties` and `additionalProperties: false`; and two
//! words for people: `x-coach-form` names what a `pattern` describes ("a
//! model name") and `x-coach-labels` says what each `enum` value means.
//!
//! A body of the wrong shape (a wrong type, a missing or unknown field) is
//! malformed: 400. A well-formed body with a value out of bounds is
//! invalid: 422.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(super::meta::OPENAPI).unwrap_or(Value::Null))
}

/// The request body schema of `method path` (the route's template, such as
/// `/api/v1/tokens`), if it declares one.
pub fn request_schema(method: &str, path: &str) -> Option<&'static Value> {
    document()
        .get("paths")?
        .get(path)?
        .get(method.to_ascii_lowercase())?
        .get("requestBody")?
        .get("content")?
        .get("application/json")?
        .get("schema")
}

/// What is wrong with a body, named by where it is
/// (`conversations[0].messages[1].text: …`).
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// A wrong type, a missing or an unknown field.
    Shape(String),
    /// A value outside the bounds its field publishes.
    Bound(String),
}

impl Problem {
    pub fn message(&self) -> &str {
        match self {
            Problem::Shape(m) | Problem::Bound(m) => m,
        }
    }
}

/// Check `v` against `schema`; the first problem.
pub fn check(schema: &Value, v: &Value, at: &str) -> Result<(), Problem> {
    let named = |what: String| {
        if at.is_empty() {
            what
        } else {
            format!("{at}: {what}")
        }
    };
    let shape = |what: String| Problem::Shape(named(what));
    let here = |what: String| Problem::Bound(named(what));
    if let Some(ty) = schema.get("type") {
        let allowed: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| is_type(v, t)) {
            return Err(shape(format!("must be {}", allowed.join(" or "))));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(v)
    {
        let labels = schema.get("x-coach-labels").and_then(Value::as_array);
        let expected: Vec<String> = options
            .iter()
            .enumerate()
            .map(|(i, o)| match labels.and_then(|l| l.get(i)?.as_str()) {
                Some(label) => format!("{} ({label})", shown(o)),
                None => shown(o),
            })
            .collect();
        return Err(here(format!(
            "{}; expected {}",
            shown(v),
            one_of(&expected)
        )));
    }
    match v {
        Value::String(s) => check_string(schema, s).map_err(here),
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or(f64::NAN)).map_err(here),
        Value::Array(items) => {
            let n = items.len();
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (n as u64) < min
            {
                return Err(here(if n == 0 {
                    "is empty".into()
                } else {
                    format!("needs at least {min} item(s), got {n}")
                }));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && n as u64 > max
            {
                return Err(here(format!("takes at most {max} item(s), got {n}")));
            }
            if let Some(item) = schema.get("items") {
                for (i, x) in items.iter().enumerate() {
                    check(item, x, &format!("{at}[{i}]"))?;
                }
            }
            Ok(())
        }
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(Value::Array(required)) = schema.get("required") {
                for r in required.iter().filter_map(Value::as_str) {
                    if !o.contains_key(r) {
                        return Err(shape(format!("needs `{r}`")));
                    }
                }
            }
            for (k, x) in o {
                let key_at = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(s, x, &key_at)?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        let known: Vec<&String> =
                            props.map(|p| p.keys().collect()).unwrap_or_default();
                        return Err(Problem::Shape(format!(
                            "{}: unknown field; expected one of: {}",
                            crate::core::text::printable(&key_at),
                            known
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    None => {}
                }
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

/// A value as a message shows it: strings in backticks, clipped and
/// printable.
fn shown(v: &Value) -> String {
    use crate::core::text::{clip, printable};
    match v {
        Value::String(s) => format!("`{}`", clip(&printable(s), 80)),
        other => clip(&other.to_string(), 80).into_owned(),
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn check_string(schema: &Value, s: &str) -> Result<(), String> {
    let chars = s.chars().count();
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (chars as u64) < min
    {
        return Err(if chars == 0 {
            "is empty".into()
        } else {
            format!("needs at least {min} characters, got {chars}")
        });
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && chars as u64 > max
    {
        return Err(format!("takes at most {max} characters, got {chars}"));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str)
        && !pattern(p).is_some_and(|r| r.is_match(s))
    {
        let s = shown(&Value::String(s.to_owned()));
        return Err(match schema.get("x-coach-form").and_then(Value::as_str) {
            Some(form) => format!("{s} is not {form}"),
            None => format!("{s} does not have the form {p}"),
        });
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
            format!(
                "`{}` is not an RFC 3339 time: {e}",
                crate::core::text::clip(s, 80)
            )
        })?;
        if let Some([first, last]) = schema
            .get("x-coach-years")
            .and_then(Value::as_array)
            .and_then(|a| Some([a.first()?.as_i64()?, a.get(1)?.as_i64()?]))
        {
            use chrono::Datelike;
            let year = i64::from(t.year());
            if year < first || year > last {
                return Err(format!("{s} is outside the years {first} to {last}"));
            }
        }
    }
    Ok(())
}

fn check_number(schema: &Value, n: f64) -> Result<(), String> {
    let min = schema.get("minimum").and_then(Value::as_f64);
    let max = schema.get("maximum").and_then(Value::as_f64);
    if let (Some(min), Some(max)) = (min, max)
        && !(min..=max).contains(&n)
    {
        return Err(format!("{n} is not between {min} and {max}"));
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        return Err(format!("{n} is below {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        return Err(format!("{n} is above {max}"));
    }
    Ok(())
}

/// The document's patterns, compiled once.
fn pattern(p: &str) -> Option<regex::Regex> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    use crate::core::sync::Lock;
    let mut cache = CACHE.get_or_init(Default::default).locked();
    if let Some(r) = cache.get(p) {
        return Some(r.clone());
    }
    let r = regex::Regex::new(p).ok()?;
    cache.insert(p.to_owned(), r.clone());
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subset_is_checked_with_the_field_named() {
        let s = json!({"type": "object", "required": ["a"], "additionalProperties": false,
            "properties": {"a": {"type": "array", "maxItems": 2, "items": {"type": "object",
                "properties": {"t": {"type": "string", "maxLength": 3},
                               "n": {"type": "integer", "minimum": 1, "maximum": 5},
                               "at": {"type": "string", "format": "date-time", "x-coach-years": [2000, 2100]}}}}}});
        assert!(check(&s, &json!({"a": [{"t": "abc", "n": 5}]}), "").is_ok());
        let e = |v: Value| check(&s, &v, "").unwrap_err();
        let shape = |m: &str| Problem::Shape(m.into());
        let bound = |m: &str| Problem::Bound(m.into());
        assert_eq!(e(json!({})), shape("needs `a`"));
        assert_eq!(
            e(json!({"a": [], "b": 1})),
            shape("b: unknown field; expected one of: a")
        );
        assert_eq!(
            e(json!({"a": [{"t": "abcd"}]})),
            bound("a[0].t: takes at most 3 characters, got 4")
        );
        assert_eq!(
            e(json!({"a": [{"n": 0}]})),
            bound("a[0].n: 0 is not between 1 and 5")
        );
        assert_eq!(
            e(json!({"a": [{"n": 1.5}]})),
            shape("a[0].n: must be integer")
        );
        assert_eq!(
            e(json!({"a": [{}, {}, {}]})),
            bound("a: takes at most 2 item(s), got 3")
        );
        assert!(
            e(json!({"a": [{"at": "0001-01-01T00:00:00Z"}]}))
                .message()
                .contains("outside the years")
        );
        let choice = json!({"enum": [1, -1], "x-coach-labels": ["yes", "no"]});
        assert_eq!(
            check(&choice, &json!(5), "r"),
            Err(bound("r: 5; expected 1 (yes) or -1 (no)"))
        );
        let form = json!({"pattern": "^[a-z]+$", "x-coach-form": "a word"});
        assert_eq!(
            check(&form, &json!("A\u{1}"), ""),
            Err(bound("`A\\u{1}` is not a word"))
        );
    }

    #[test]
    fn every_request_body_of_the_document_has_a_schema_here() {
        for (path, method) in [
            ("/api/v1/conversations", "POST"),
            ("/api/v1/conversations/import", "POST"),
            ("/api/v1/feedback", "POST"),
            ("/api/v1/tokens", "POST"),
        ] {
            assert!(request_schema(method, path).is_some(), "{method} {path}");
        }
    }
}
