//! What a workflow needs to know of a plugin to check a step that uses it:
//! its kind and the parameters it takes. Plugin manifests are read into
//! these types; workflows are checked against them.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The plugin kinds of `coach:plugin@0.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Source,
    Trainer,
    Analyzer,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Source => "source",
            Kind::Trainer => "trainer",
            Kind::Analyzer => "analyzer",
        })
    }
}

/// One parameter a plugin (or a built-in step kind) accepts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default)]
    pub required: bool,
    /// For strings: the accepted values.
    #[serde(default)]
    pub one_of: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Float,
    Boolean,
    /// A file or folder; resolved against the workflow's folder and granted
    /// read-only when the operator allows it.
    Path,
    Array,
    Table,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Float => "a number",
            ParamType::Boolean => "a boolean",
            ParamType::Path => "a path (string)",
            ParamType::Array => "an array",
            ParamType::Table => "a table",
        })
    }
}

impl ParamType {
    /// Whether JSON value `v` has this type.
    pub fn admits(self, v: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, v) {
            (ParamType::String | ParamType::Path, Value::String(_)) => true,
            (ParamType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (ParamType::Float, Value::Number(_)) => true,
            (ParamType::Boolean, Value::Bool(_)) => true,
            (ParamType::Array, Value::Array(_)) => true,
            (ParamType::Table, Value::Object(_)) => true,
            _ => false,
        }
    }
}

/// A plugin as workflows see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub kind: Kind,
    pub parameters: BTreeMap<String, Parameter>,
    /// Installed but not loadable, and why: a workflow naming it is told.
    pub problem: Option<String>,
}

/// The plugins a workflow may name, by id.
pub type Catalog = BTreeMap<String, PluginSpec>;

/// The analyzer Coach ships, used where none is named.
pub const DEFAULT_ANALYZER: &str = "analyzer-quality";

/// The built-in source that reads files (and checks uploaded ones).
pub const FILE_SOURCE: &str = "source-files";
