//! `plugin.toml`: what a plugin is, what it asks for, which parameters it
//! takes. Read before anything of the plugin is compiled.

use crate::config::units;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A plugin id: lower-case letters, digits and `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PluginId(String);

impl TryFrom<String> for PluginId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(PluginId(s))
        } else {
            Err(format!(
                "plugin id `{s}` must be 1-64 lower-case letters, digits or `-`, starting with a letter"
            ))
        }
    }
}

impl PluginId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use crate::core::params::{Kind, ParamType, Parameter};

/// API versions this host has bindings for, oldest first.
///
/// The policy (docs/plugins.md, "Versions"): while the major version is 0,
/// the minor version plays the major's part. A patch release (0.1.0 →
/// 0.1.1) only adds: new optional interfaces, new worlds; nothing a plugin
/// built before imports or exports changes, so the host loads every older
/// patch of a minor it supports. A new minor (0.2) may change interfaces;
/// the host then keeps the bindings of the minor before it for at least one
/// release, and `coach plugin check` says which plugins need rebuilding.
pub const SUPPORTED_APIS: &[&str] = &["0.1.0", "0.1.1"];

/// The newest supported API version, the one the SDK of this release
/// builds against.
pub const CURRENT_API: &str = "0.1.1";
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: PluginId,
    pub version: String,
    pub kind: Kind,
    /// The `coach:plugin` interface versions the plugin works with: a
    /// version (`"0.1.1"`, meaning that one or a later compatible one:
    /// `^0.1.1`) or a range (`">=0.1.0, <0.3"`).
    pub api: String,
    #[serde(default)]
    pub description: String,
    /// The component file, relative to the manifest. Default `<id>.wasm`.
    #[serde(default)]
    pub wasm: Option<String>,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub limits: WantedLimits,
    /// Parameters a step may set in `with`, by name.
    #[serde(default)]
    pub parameters: BTreeMap<String, Parameter>,
}

/// What the plugin asks the operator for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// `"read"`: read-only access to the files a step names in `path`
    /// parameters, when the operator's grant covers them.
    #[serde(default)]
    pub filesystem: Option<FsAccess>,
    /// Outgoing HTTP (`wasi:http/outgoing-handler`), to the hosts the
    /// operator's grant names and no others.
    #[serde(default)]
    pub http: bool,
    /// Secrets the plugin reads as environment variables, by name, when
    /// the operator's grant gives them (`HELPDESK_TOKEN`).
    #[serde(default)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsAccess {
    Read,
}

/// Limits the plugin would like; the operator's ceilings still apply.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WantedLimits {
    pub memory: Option<String>,
    pub timeout: Option<String>,
}

impl Manifest {
    /// Parse and check a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        m.api_version().map_err(|e| format!("{origin}: api: {e}"))?;
        if m.kind == Kind::Analyzer && !m.api_req()?.matches(&semver::Version::new(0, 1, 1)) {
            return Err(format!(
                "{origin}: plugin `{}` is an analyzer, which needs api 0.1.1 or later (0.1.0 only reserved the kind)",
                m.id
            ));
        }
        m.wanted_memory()
            .map_err(|e| format!("{origin}: limits.memory: {e}"))?;
        m.wanted_timeout()
            .map_err(|e| format!("{origin}: limits.timeout: {e}"))?;
        if let Some(bad) = m
            .capabilities
            .secrets
            .iter()
            .find(|s| !crate::core::net::is_secret_name(s))
        {
            return Err(format!(
                "{origin}: capabilities.secrets: `{bad}` is not a name of letters, digits and `_` starting with a letter"
            ));
        }
        Ok(m)
    }

    /// The manifest's `api` as a version requirement.
    pub fn api_req(&self) -> Result<semver::VersionReq, String> {
        semver::VersionReq::parse(self.api.trim()).map_err(|e| {
            format!(
                "`{}` is neither a version nor a version range ({e}); write e.g. \"{CURRENT_API}\" or \">=0.1.0, <0.2\"",
                self.api
            )
        })
    }

    /// The newest API version this host supports within the manifest's
    /// range: the bindings the plugin is loaded with.
    pub fn api_version(&self) -> Result<&'static str, String> {
        let req = self.api_req()?;
        SUPPORTED_APIS
            .iter()
            .rev()
            .find(|v| req.matches(&semver::Version::parse(v).expect("supported versions parse")))
            .copied()
            .ok_or_else(|| {
                format!(
                    "plugin `{}` works with api {}, this Coach supports {}",
                    self.id,
                    self.api,
                    SUPPORTED_APIS.join(", ")
                )
            })
    }

    pub fn wanted_memory(&self) -> Result<Option<u64>, String> {
        self.limits
            .memory
            .as_deref()
            .map(units::parse_size)
            .transpose()
    }

    pub fn wanted_timeout(&self) -> Result<Option<Duration>, String> {
        self.limits
            .timeout
            .as_deref()
            .map(units::parse_duration)
            .transpose()
    }

    pub fn path_parameters(&self) -> impl Iterator<Item = &str> {
        self.parameters
            .iter()
            .filter(|(_, p)| p.ty == ParamType::Path)
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_party_manifests_parse() {
        for text in [
            include_str!("../../../plugins/source-files/plugin.toml"),
            include_str!("../../../plugins/trainer-intent/plugin.toml"),
        ] {
            Manifest::parse(text, "plugin.toml").unwrap();
        }
    }

    #[test]
    fn bad_ids_and_apis_are_rejected() {
        let e = Manifest::parse(
            "id = 'Bad_Id'\nversion='1'\nkind='source'\napi='0.1.0'",
            "m",
        )
        .unwrap_err();
        assert!(e.contains("Bad_Id"), "{e}");
        let e =
            Manifest::parse("id = 'x'\nversion='1'\nkind='source'\napi='9.0.0'", "m").unwrap_err();
        assert!(e.contains("9.0.0"), "{e}");
        let e =
            Manifest::parse("id = 'x'\nversion='1'\nkind='source'\napi='one'", "m").unwrap_err();
        assert!(e.contains("neither a version"), "{e}");
    }

    #[test]
    fn api_ranges_pick_the_newest_supported_version() {
        let m = |api: &str| {
            Manifest::parse(
                &format!("id = 'x'\nversion='1'\nkind='source'\napi='{api}'"),
                "m",
            )
        };
        assert_eq!(m("0.1.0").unwrap().api_version().unwrap(), "0.1.1");
        assert_eq!(m("=0.1.0").unwrap().api_version().unwrap(), "0.1.0");
        assert_eq!(m(">=0.1.0, <0.3").unwrap().api_version().unwrap(), "0.1.1");
        assert!(m("0.2").is_err());
        // An analyzer's range must reach 0.1.1.
        let e = Manifest::parse("id = 'x'\nversion='1'\nkind='analyzer'\napi='=0.1.0'", "m")
            .unwrap_err();
        assert!(e.contains("0.1.1"), "{e}");
        Manifest::parse("id = 'x'\nversion='1'\nkind='analyzer'\napi='0.1'", "m").unwrap();
    }
}
