//! `coach plugin new <kind> <name>`: a plugin crate that builds, checks,
//! runs and tests as it is — manifest, a working example of the kind,
//! native tests, sandbox tests, a README, and the SDK vendored beside it
//! (this binary carries the SDK's sources, so nothing has to be fetched
//! but the SDK's own dependencies from crates.io).

use crate::cli::{note, out};
use crate::plugin::manifest::{CURRENT_API, Kind, PluginId};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What the plugin is.
    #[arg(value_enum)]
    pub kind: NewKind,
    /// Its id: lower-case letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Where to create it (default: `./<name>`); must be empty or absent.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Depend on the SDK at this path (a checkout of Coach's
    /// `plugin-sdk`) instead of vendoring a copy.
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewKind {
    Source,
    Trainer,
    Analyzer,
}

impl NewKind {
    fn kind(self) -> Kind {
        match self {
            NewKind::Source => Kind::Source,
            NewKind::Trainer => Kind::Trainer,
            NewKind::Analyzer => Kind::Analyzer,
        }
    }
}

/// The SDK's version, as its Cargo.toml says.
pub fn sdk_version() -> String {
    toml::from_str::<toml::Table>(SDK_FILES[0].1)
        .ok()
        .and_then(|t| {
            t.get("package")?
                .get("version")?
                .as_str()
                .map(str::to_owned)
        })
        .expect("the SDK's Cargo.toml names its version")
}

/// The SDK's files, vendored into new plugins: (path, contents).
const SDK_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../../plugin-sdk/Cargo.toml"),
    ),
    (
        "README.md",
        include_str!("../../../../plugin-sdk/README.md"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../../plugin-sdk/src/lib.rs"),
    ),
    (
        "src/host.rs",
        include_str!("../../../../plugin-sdk/src/host.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../../plugin-sdk/src/testing.rs"),
    ),
    (
        "src/sandbox.rs",
        include_str!("../../../../plugin-sdk/src/sandbox.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../../plugin-sdk/src/http.rs"),
    ),
    (
        "src/resume.rs",
        include_str!("../../../../plugin-sdk/src/resume.rs"),
    ),
    (
        "wit/coach.wit",
        include_str!("../../../../plugin-sdk/wit/coach.wit"),
    ),
];

const CARGO_TOML: &str = include_str!("../../../templates/plugin/Cargo.toml");
const GITIGNORE: &str = include_str!("../../../templates/plugin/gitignore");
const README: &str = include_str!("../../../templates/plugin/README.md");

/// One kind's files: (path in the new crate, template).
fn kind_files(kind: NewKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        NewKind::Source => &[
            (
                "plugin.toml",
                include_str!("../../../templates/plugin/source/plugin.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("../../../templates/plugin/source/lib.rs"),
            ),
            (
                "tests/sandbox.rs",
                include_str!("../../../templates/plugin/source/sandbox.rs"),
            ),
            (
                "workflow.toml",
                include_str!("../../../templates/plugin/source/workflow.toml"),
            ),
        ],
        NewKind::Trainer => &[
            (
                "plugin.toml",
                include_str!("../../../templates/plugin/trainer/plugin.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("../../../templates/plugin/trainer/lib.rs"),
            ),
            (
                "tests/sandbox.rs",
                include_str!("../../../templates/plugin/trainer/sandbox.rs"),
            ),
            (
                "examples.jsonl",
                include_str!("../../../templates/plugin/trainer/examples.jsonl"),
            ),
        ],
        NewKind::Analyzer => &[
            (
                "plugin.toml",
                include_str!("../../../templates/plugin/analyzer/plugin.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("../../../templates/plugin/analyzer/lib.rs"),
            ),
            (
                "tests/sandbox.rs",
                include_str!("../../../templates/plugin/analyzer/sandbox.rs"),
            ),
            (
                "conversations.jsonl",
                include_str!("../../../templates/plugin/analyzer/conversations.jsonl"),
            ),
        ],
    }
}

/// What differs per kind in the shared templates.
fn kind_words(kind: NewKind) -> [(&'static str, &'static str); 4] {
    match kind {
        NewKind::Source => [
            ("description", "Labelled examples for Coach."),
            (
                "files",
                "| `workflow.toml` | a workflow that trains a model on this source's examples and registers it |\n",
            ),
            (
                "run_args",
                "                # what Coach would read from it",
            ),
            (
                "usage",
                "\n## In a workflow\n\n```sh\ncoach plugin install .\ncoach run workflow.toml     # trains on this source's examples, registers the model\n```\n",
            ),
        ],
        NewKind::Trainer => [
            ("description", "An intent classifier for Coach."),
            (
                "files",
                "| `examples.jsonl` | a few labelled examples to try it on (`split`: train, validation, test) |\n",
            ),
            (
                "run_args",
                "--input examples.jsonl --text \"is there wifi\"",
            ),
            (
                "usage",
                "\n## In a workflow\n\nA `train` step names it: `uses = \"{{id}}\"`, after a source and a\n`split` step, with its parameters in `with`.\n",
            ),
        ],
        NewKind::Analyzer => [
            (
                "description",
                "Scores conversations for Coach and says why.",
            ),
            (
                "files",
                "| `conversations.jsonl` | two conversations to try it on (Coach JSONL) |\n",
            ),
            ("run_args", "--input conversations.jsonl"),
            (
                "usage",
                "\n## Using it\n\n```sh\ncoach plugin install .\ncoach analyze --analyzer {{id}} --input conversations.jsonl\n```\n\nor an `analyze` step with `with = { analyzer = \"{{id}}\" }`.\n",
            ),
        ],
    }
}

fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    // Twice: a variable's value may name another (`{{id}}` in `usage`).
    for _ in 0..2 {
        for (k, v) in vars {
            text = text.replace(&format!("{{{{{k}}}}}"), v);
        }
    }
    text
}

pub fn run(a: Args) -> Result<ExitCode> {
    let id = PluginId::try_from(a.name.clone()).map_err(anyhow::Error::msg)?;
    let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from(id.as_str()));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    let sdk_dep = match &a.sdk {
        Some(path) => {
            let path = path
                .canonicalize()
                .with_context(|| format!("--sdk {}: cannot open it", path.display()))?;
            if !path.join("wit").join("coach.wit").is_file() {
                bail!(
                    "--sdk {}: not the Coach plugin SDK (no wit/coach.wit)",
                    path.display()
                );
            }
            format!(
                "version = \"{}\", path = {}",
                sdk_version(),
                toml_string(&path.display().to_string())
            )
        }
        None => format!(
            "version = \"{}\", path = \"vendor/coach-plugin-sdk\"",
            sdk_version()
        ),
    };
    let kind = a.kind;
    let mut vars: Vec<(&str, String)> = vec![
        ("id", id.to_string()),
        ("crate", id.as_str().replace('-', "_")),
        ("kind", kind.kind().to_string()),
        ("feature", kind.kind().to_string()),
        ("api", CURRENT_API.to_owned()),
        ("sdk", sdk_dep),
        ("sdk_version", sdk_version()),
    ];
    for (k, v) in kind_words(kind) {
        vars.push((k, v.to_owned()));
    }
    let mut files: Vec<(PathBuf, String)> = vec![
        (PathBuf::from("Cargo.toml"), fill(CARGO_TOML, &vars)),
        (PathBuf::from(".gitignore"), GITIGNORE.to_owned()),
        (PathBuf::from("README.md"), fill(README, &vars)),
    ];
    for (path, template) in kind_files(kind) {
        files.push((PathBuf::from(path), fill(template, &vars)));
    }
    if a.sdk.is_none() {
        for (path, text) in SDK_FILES {
            files.push((
                Path::new("vendor/coach-plugin-sdk").join(path),
                (*text).to_owned(),
            ));
        }
    }
    for (path, text) in &files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("cannot write {}", full.display()))?;
    }
    out!("created {} plugin `{id}` in {}", kind.kind(), dir.display());
    note!(
        "next: cd {} && coach plugin build && coach plugin run{}",
        dir.display(),
        match kind {
            NewKind::Source => "",
            NewKind::Trainer => " --input examples.jsonl --text \"is there wifi\"",
            NewKind::Analyzer => " --input conversations.jsonl",
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_sdk_source_file_is_vendored() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/src");
        for entry in std::fs::read_dir(&src).unwrap() {
            let name = format!("src/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(
                super::SDK_FILES.iter().any(|(path, _)| *path == name),
                "{name} is not in SDK_FILES: new plugins would not build"
            );
        }
    }
}
