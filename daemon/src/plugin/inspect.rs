//! `coach plugin check`: everything the host would refuse or wonder about
//! in a plugin folder, before it is installed — each problem located in
//! the manifest (`plugin.toml:line:column`) or named by the component.
//!
//! Checked: the manifest (syntax, fields, the API range), the limits it asks
//! for against the operator's ceilings (refused, not clamped), the
//! capabilities it asks for against the config's grants, the component
//! (compiles, its imports are what the host offers, its exports are what
//! its kind needs, the interface version it was built against lies in the
//! manifest's range).

use super::manifest::{FsAccess, Kind, Manifest, SUPPORTED_APIS};
use super::{PluginHost, bindings, first_line, is_component};
use crate::config::Config;
use crate::config::units::format_size;
use crate::workflow::error::Located;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// How bad a finding is: errors make the host refuse the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub at: Located,
}

/// What `inspect` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub manifest_path: PathBuf,
    pub manifest: Option<Manifest>,
    pub wasm_path: Option<PathBuf>,
    pub wasm_sha256: Option<String>,
    pub wasm_bytes: u64,
    /// The `coach:plugin` version the component was built against.
    pub built_against: Option<String>,
    /// The component's exports and imports, by name.
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// A trainer that exports `warm-start`.
    pub warm_start: bool,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    fn error(&mut self, at: Located) {
        self.findings.push(Finding {
            severity: Severity::Error,
            at,
        });
    }

    fn warning(&mut self, at: Located) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            at,
        });
    }
}

/// The manifest of a plugin folder, of a `plugin.toml`, or beside a
/// `.wasm` file.
pub fn manifest_path(target: &Path) -> PathBuf {
    if target.is_dir() {
        target.join("plugin.toml")
    } else if target.extension().is_some_and(|x| x == "wasm") {
        target
            .parent()
            .unwrap_or(Path::new("."))
            .join("plugin.toml")
    } else {
        target.to_path_buf()
    }
}

/// The component a manifest names: `wasm`, or `<id>.wasm`, beside it.
pub fn wasm_path(manifest_path: &Path, manifest: &Manifest) -> PathBuf {
    let name = manifest
        .wasm
        .clone()
        .unwrap_or_else(|| format!("{}.wasm", manifest.id));
    manifest_path.parent().unwrap_or(Path::new(".")).join(name)
}

/// Check the plugin at `target` (a folder, its `plugin.toml`, or its
/// `.wasm`) against `host`'s engine and `config`'s ceilings and grants.
pub fn inspect(host: &PluginHost, config: &Config, target: &Path) -> Report {
    let manifest_path = manifest_path(target);
    let mut report = Report {
        manifest_path: manifest_path.clone(),
        ..Report::default()
    };
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(t) => t,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (a plugin folder holds `plugin.toml` beside its component; `coach plugin new` makes one)"
            } else {
                ""
            };
            report.error(Located::file(
                &manifest_path,
                format!("cannot read the manifest: {e}{hint}"),
            ));
            return report;
        }
    };
    let Some(manifest) = check_manifest(&mut report, host, config, &manifest_path, &text) else {
        return report;
    };
    report.manifest = Some(manifest.clone());
    check_component(&mut report, host, &manifest_path, &text, &manifest);
    report
}

/// The span of the value at `path` (`["limits", "memory"]`), or of the
/// table that should hold it, or of the file's start.
fn span_of(doc: &DeTable<'_>, path: &[&str]) -> Range<usize> {
    let mut table = doc;
    let mut best = 0..0;
    for (i, key) in path.iter().enumerate() {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key) else {
            return best;
        };
        best = if i + 1 == path.len() {
            v.span()
        } else {
            k.span()
        };
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return best,
        }
    }
    best
}

fn check_manifest(
    report: &mut Report,
    host: &PluginHost,
    config: &Config,
    path: &Path,
    text: &str,
) -> Option<Manifest> {
    let manifest: Manifest = match toml::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            report.error(Located::at(path, text, span, e.message().trim()));
            return None;
        }
    };
    let doc = DeTable::parse(text).ok()?.into_inner();
    let at = |keys: &[&str], message: String| Located::at(path, text, span_of(&doc, keys), message);
    match manifest.api_version() {
        Ok(_)
            if manifest.kind == Kind::Analyzer
                && !manifest
                    .api_req()
                    .is_ok_and(|r| r.matches(&semver::Version::new(0, 1, 1))) =>
        {
            report.error(at(
                &["api"],
                "an analyzer needs api 0.1.1 or later (0.1.0 only reserved the kind)".into(),
            ));
        }
        Ok(_) => {}
        Err(e) => report.error(at(&["api"], e)),
    }
    if !is_semver(&manifest.version) {
        report.warning(at(
            &["version"],
            format!(
                "`{}` is not a semantic version (MAJOR.MINOR.PATCH); `coach plugin list` and upgrades compare versions that way",
                manifest.version
            ),
        ));
    }
    let ceilings = host.limits();
    let source = config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the built-in defaults".into());
    match manifest.wanted_memory() {
        Err(e) => report.error(at(&["limits", "memory"], e)),
        Ok(Some(m)) if m > ceilings.memory => report.error(at(
            &["limits", "memory"],
            format!(
                "asks for {} of memory, above the operator's ceiling of {} (`[limits] memory` in {source}); the host would not grant it: ask for at most that, or have the ceiling raised",
                format_size(m),
                format_size(ceilings.memory)
            ),
        )),
        Ok(_) => {}
    }
    match manifest.wanted_timeout() {
        Err(e) => report.error(at(&["limits", "timeout"], e)),
        Ok(Some(t)) if t > ceilings.timeout => report.error(at(
            &["limits", "timeout"],
            format!(
                "asks for {} per job, above the operator's ceiling of {} (`[limits] timeout` in {source}); ask for at most that, or have the ceiling raised",
                crate::config::units::format_duration(t),
                crate::config::units::format_duration(ceilings.timeout)
            ),
        )),
        Ok(_) => {}
    }
    let grant = host.grant(manifest.id.as_str());
    let reads = manifest.capabilities.filesystem == Some(FsAccess::Read);
    if reads && grant.read.is_empty() {
        report.warning(at(
            &["capabilities", "filesystem"],
            format!(
                "asks to read files, but {source} grants `{id}` no folders: a step that names a file will be refused until the operator adds `[grants.{id}] read = [\"<folder>\"]`",
                id = manifest.id
            ),
        ));
    }
    if !reads && !grant.read.is_empty() {
        report.warning(Located::file(
            path,
            format!(
                "{source} grants `{}` folders to read, but the manifest does not ask for `[capabilities] filesystem = \"read\"`: the grant is unused",
                manifest.id
            ),
        ));
    }
    let asks_http = manifest.capabilities.http;
    if asks_http && grant.http.is_empty() {
        report.warning(at(
            &["capabilities", "http"],
            format!(
                "asks for outgoing HTTP, but {source} grants `{id}` no hosts: every request will be refused until the operator adds `[grants.{id}] http = [\"<host>\"]`",
                id = manifest.id
            ),
        ));
    }
    if !asks_http && !grant.http.is_empty() {
        report.warning(Located::file(
            path,
            format!(
                "{source} grants `{}` hosts for HTTP, but the manifest does not ask for `[capabilities] http = true`: the grant is unused",
                manifest.id
            ),
        ));
    }
    for secret in &manifest.capabilities.secrets {
        if !grant.secrets.contains_key(secret) {
            report.warning(at(
                &["capabilities", "secrets"],
                format!(
                    "asks for secret `{secret}`, which {source} does not give `{id}` (`[grants.{id}.secrets] {secret} = \"${{{secret}}}\"`, and the variable set where Coach runs)",
                    id = manifest.id
                ),
            ));
        }
    }
    for name in manifest.path_parameters() {
        if !reads {
            report.error(at(
                &["parameters", name, "type"],
                format!(
                    "parameter `{name}` is a path, which the plugin can only read with `[capabilities] filesystem = \"read\"`"
                ),
            ));
        }
    }
    if let Some(w) = &manifest.wasm
        && (Path::new(w).is_absolute() || Path::new(w).components().count() != 1)
    {
        report.error(at(
            &["wasm"],
            format!("`{w}` must be a file name beside the manifest, not a path"),
        ));
        return None;
    }
    Some(manifest)
}

fn is_semver(v: &str) -> bool {
    semver::Version::parse(v).is_ok()
}

/// The `coach:plugin` version in an import or export name
/// (`coach:plugin/source-api@0.1.1` → `0.1.1`).
fn coach_version(name: &str) -> Option<&str> {
    name.strip_prefix("coach:plugin/")?
        .split_once('@')
        .map(|(_, v)| v)
}

fn check_component(
    report: &mut Report,
    host: &PluginHost,
    manifest_path: &Path,
    text: &str,
    manifest: &Manifest,
) {
    let wasm_path = wasm_path(manifest_path, manifest);
    report.wasm_path = Some(wasm_path.clone());
    let bytes = match std::fs::read(&wasm_path) {
        Ok(b) => b,
        Err(e) => {
            report.error(Located::file(
                &wasm_path,
                format!(
                    "cannot read the component: {e}{}",
                    if e.kind() == std::io::ErrorKind::NotFound {
                        " (build it with `coach plugin build`)"
                    } else {
                        ""
                    }
                ),
            ));
            return;
        }
    };
    report.wasm_bytes = bytes.len() as u64;
    if !is_component(&bytes) {
        report.error(Located::file(
            &wasm_path,
            if bytes.starts_with(b"\0asm") {
                "a core WebAssembly module, not a component: build it for wasm32-wasip2".to_owned()
            } else {
                "not a WebAssembly component".to_owned()
            },
        ));
        return;
    }
    let sha = crate::core::hash::sha256_hex(&bytes);
    report.wasm_sha256 = Some(sha.clone());
    let engine = host.engine();
    let component = match host.cache.load(engine, &bytes, &sha) {
        Ok((c, _)) => c,
        Err(e) => {
            report.error(Located::file(
                &wasm_path,
                format!("does not compile: {}", first_line(&format!("{e:#}"))),
            ));
            return;
        }
    };
    let ty = component.component_type();
    report.exports = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    report.imports = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let versions: std::collections::BTreeSet<&str> = report
        .exports
        .iter()
        .chain(&report.imports)
        .filter_map(|n| coach_version(n))
        .collect();
    let doc = DeTable::parse(text).map(|d| d.into_inner()).ok();
    let api_at = |message: String| match &doc {
        Some(d) => Located::at(manifest_path, text, span_of(d, &["api"]), message),
        None => Located::file(manifest_path, message),
    };
    let built: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
    match built.as_slice() {
        [] => report.error(Located::file(
            &wasm_path,
            "neither imports nor exports any `coach:plugin` interface: is it a Coach plugin?",
        )),
        [v] => {
            report.built_against = Some(v.clone());
            let version = semver::Version::parse(v).ok();
            if !SUPPORTED_APIS.contains(&v.as_str()) {
                report.error(Located::file(
                    &wasm_path,
                    format!(
                        "built against coach:plugin@{v}, which this Coach does not support ({})",
                        SUPPORTED_APIS.join(", ")
                    ),
                ));
            } else if let (Ok(req), Some(version)) = (manifest.api_req(), version)
                && !req.matches(&version)
            {
                report.error(api_at(format!(
                    "the component was built against coach:plugin@{v}, outside the manifest's range `{}`",
                    manifest.api
                )));
            }
        }
        many => report.error(Located::file(
            &wasm_path,
            format!(
                "mixes coach:plugin versions {}: build it against one",
                many.join(", ")
            ),
        )),
    }
    if report
        .imports
        .iter()
        .any(|n| n.starts_with("wasi:http/outgoing-handler@"))
        && !manifest.capabilities.http
    {
        report.error(Located::file(
            manifest_path,
            "the component sends HTTP requests (it imports `wasi:http/outgoing-handler`), but the manifest does not ask for `[capabilities] http = true`: every request would be refused",
        ));
    }
    let pre = match host.linker_for(manifest).instantiate_pre(&component) {
        Ok(p) => p,
        Err(e) => {
            let offered = "the host offers `coach:plugin/host`, `coach:plugin/types`, WASI 0.2 (without sockets), and `wasi:http/outgoing-handler` to plugins that ask for `[capabilities] http = true`";
            report.error(Located::file(
                &wasm_path,
                format!(
                    "imports what the host does not offer: {}; {offered}",
                    first_line(&format!("{e:#}"))
                ),
            ));
            return;
        }
    };
    let exported = |iface: &str| {
        report
            .exports
            .iter()
            .any(|n| n.starts_with(&format!("coach:plugin/{iface}@")))
    };
    let exports_kind: Vec<Kind> = [
        (Kind::Source, "source-api"),
        (Kind::Trainer, "trainer-api"),
        (Kind::Analyzer, "analyzer-api"),
    ]
    .into_iter()
    .filter(|(_, iface)| exported(iface))
    .map(|(k, _)| k)
    .collect();
    report.warm_start = exported("warm-start");
    let kind_at = |message: String| match &doc {
        Some(d) => Located::at(manifest_path, text, span_of(d, &["kind"]), message),
        None => Located::file(manifest_path, message),
    };
    if !exports_kind.contains(&manifest.kind) {
        let hint = match exports_kind.first() {
            Some(k) => format!(": it exports what a {k} does — set `kind = \"{k}\"`?"),
            None => String::new(),
        };
        report.error(kind_at(format!(
            "the manifest says {}, but the component does not export `coach:plugin/{}`{hint}",
            manifest.kind,
            match manifest.kind {
                Kind::Source => "source-api",
                Kind::Trainer => "trainer-api",
                Kind::Analyzer => "analyzer-api",
            }
        )));
        return;
    }
    let typed = match manifest.kind {
        Kind::Trainer => bindings::trainer::TrainerIndices::new(&pre).map(drop),
        Kind::Source => bindings::source::SourcePre::new(pre).map(drop),
        Kind::Analyzer => bindings::analyzer::AnalyzerPre::new(pre).map(drop),
    };
    if let Err(e) = typed {
        report.error(Located::file(
            &wasm_path,
            format!(
                "its {} export does not have the interface's types: {}",
                manifest.kind,
                first_line(&format!("{e:#}"))
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_interface_names() {
        assert_eq!(
            coach_version("coach:plugin/source-api@0.1.1"),
            Some("0.1.1")
        );
        assert_eq!(coach_version("wasi:io/streams@0.2.6"), None);
        assert_eq!(coach_version("coach:plugin/host"), None);
    }

    #[test]
    fn spans_point_at_the_key_or_its_table() {
        let text = "id = 'x'\n[limits]\nmemory = '9GiB'\n";
        let doc = DeTable::parse(text).unwrap().into_inner();
        let s = span_of(&doc, &["limits", "memory"]);
        assert_eq!(&text[s], "'9GiB'");
        let s = span_of(&doc, &["limits", "timeout"]);
        assert_eq!(&text[s], "limits");
        assert_eq!(span_of(&doc, &["capabilities", "filesystem"]), 0..0);
    }
}
