//! Names and ids, each a type of its own so one cannot stand for another:
//! a workflow's name is not a step's id, a run id is not a model id, and a
//! SHA-256 is 64 hex digits or it is not a SHA-256. Every name type checks
//! itself on the way in (`TryFrom<String>`, `FromStr`, serde's `try_from`),
//! so a bad one is refused where it is read, with the reason.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A name as workflows, steps, models and queues are named: 1 to 64
/// letters, digits, `-` or `_`, starting with a letter or digit.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> Result<Self, String> {
                if is_identifier(&s) {
                    Ok($name(s))
                } else {
                    Err(format!(
                        concat!($what, " `{}` must be 1 to 64 letters, digits, `-` or `_`, starting with a letter or digit"),
                        s
                    ))
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = String;

            fn try_from(s: &str) -> Result<Self, String> {
                $name::try_from(s.to_owned())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                $name::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // A checked name reads as the string it is, wherever a `&str` is
        // taken.
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

name_type!(
    /// A workflow's `name`.
    WorkflowName,
    "workflow name"
);
name_type!(
    /// A step's `id`, unique within its workflow.
    StepId,
    "step id"
);
name_type!(
    /// A model's name: every version of a model shares it.
    ModelName,
    "model name"
);
name_type!(
    /// A deployment environment of a model: `staging`, `production`, or any
    /// an operator names.
    EnvironmentName,
    "environment"
);

/// A run's id in the store.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(RunId)
            .ok_or_else(|| format!("`{s}` is not a run id (a positive number)"))
    }
}

/// How a model is named on the command line and in the API: by id, by
/// name (its latest version), by `name:version`, or `latest` (the most
/// recently registered model of any name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelRef {
    Id(i64),
    Latest,
    Name(ModelName),
    Version(ModelName, i32),
}

impl FromStr for ModelRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "latest" {
            return Ok(ModelRef::Latest);
        }
        if let Ok(id) = s.parse::<i64>() {
            return if id > 0 {
                Ok(ModelRef::Id(id))
            } else {
                Err(format!("`{s}` is not a model id (a positive number)"))
            };
        }
        match s.rsplit_once(':') {
            Some((name, version)) => {
                let version = version
                    .parse::<i32>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| {
                        format!("`{version}` in `{s}` is not a model version (1, 2, …)")
                    })?;
                Ok(ModelRef::Version(ModelName::try_from(name)?, version))
            }
            None => Ok(ModelRef::Name(ModelName::try_from(s)?)),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Id(id) => write!(f, "{id}"),
            ModelRef::Latest => f.write_str("latest"),
            ModelRef::Name(n) => write!(f, "{n}"),
            ModelRef::Version(n, v) => write!(f, "{n}:{v}"),
        }
    }
}

/// A SHA-256 as 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(super::hash::sha256_hex(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// The first `n` characters of a hash (or anything) that may be shorter
/// than `n`, for messages: never panics.
pub fn short(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl TryFrom<String> for Sha256 {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Sha256(s))
        } else {
            Err(format!(
                "`{}` is not a SHA-256 (64 lower-case hex digits)",
                short(&s, 80)
            ))
        }
    }
}

impl FromStr for Sha256 {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Sha256::try_from(s.to_owned())
    }
}

impl From<Sha256> for String {
    fn from(h: Sha256) -> String {
        h.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Sha256 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Sha256 {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_check_themselves() {
        assert!(WorkflowName::try_from("support-bot_2").is_ok());
        for bad in ["", "-x", "a b", "é", &"x".repeat(65)] {
            let e = StepId::try_from(bad).unwrap_err();
            assert!(e.starts_with("step id `"), "{e}");
        }
        let parsed: WorkflowName = serde_json::from_str("\"wf\"").unwrap();
        assert_eq!(parsed, "wf");
        assert!(serde_json::from_str::<WorkflowName>("\"w f\"").is_err());
    }

    #[test]
    fn model_refs_parse_every_form() {
        let name = ModelName::try_from("bot").unwrap();
        assert_eq!("7".parse::<ModelRef>(), Ok(ModelRef::Id(7)));
        assert_eq!("latest".parse::<ModelRef>(), Ok(ModelRef::Latest));
        assert_eq!("bot".parse::<ModelRef>(), Ok(ModelRef::Name(name.clone())));
        assert_eq!("bot:3".parse::<ModelRef>(), Ok(ModelRef::Version(name, 3)));
        assert!(
            "bot:x"
                .parse::<ModelRef>()
                .unwrap_err()
                .contains("model version")
        );
        assert!("0".parse::<ModelRef>().is_err());
        assert!("a b".parse::<ModelRef>().is_err());
        for s in ["7", "latest", "bot", "bot:3"] {
            assert_eq!(s.parse::<ModelRef>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn hashes_are_checked_and_shortened_safely() {
        let h = Sha256::of(b"coach");
        assert_eq!(h.short().len(), 12);
        assert_eq!(Sha256::try_from(h.to_string()).unwrap(), h);
        assert!(Sha256::try_from("abc".to_owned()).is_err());
        assert_eq!(short("abc", 12), "abc");
        assert_eq!(short("", 12), "");
    }
}
