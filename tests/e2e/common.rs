//! Shared helpers: a temporary Coach home with its own config, and the
//! `coach` binary as a real process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The hostile plugins, built from `fixtures/` by the build script.
pub fn fixture_plugins() -> PathBuf {
    Path::new(env!("OUT_DIR")).join("plugins")
}

/// `../shared/datasets` beside the workspace, or `COACH_DATASETS`.
pub fn datasets() -> Option<PathBuf> {
    let dir = std::env::var_os("COACH_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/datasets"));
    if dir.is_dir() {
        Some(dir.canonicalize().unwrap())
    } else {
        eprintln!(
            "skipping: no datasets at {} (set COACH_DATASETS)",
            dir.display()
        );
        None
    }
}

/// A private Coach home: data directory, config, scratch files.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Home {
    /// A config with the fixtures installed, `source-files` granted the
    /// workspace's `workflows/` and this home's `data-in/`, and `extra`
    /// appended.
    pub fn new(extra: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data-in")).unwrap();
        let mut read = vec![
            workspace().join("workflows").display().to_string(),
            dir.path().join("data-in").display().to_string(),
        ];
        if let Some(d) = datasets() {
            read.push(d.display().to_string());
        }
        let config = format!(
            r#"data_dir = "{data}"
plugin_dirs = ["{fixtures}", "{installed}"]

[limits]
memory = "2GiB"
timeout = "2m"
output = "64KiB"

[grants.source-files]
read = {read:?}

[grants.read-outside]
read = ["{granted}"]
{extra}
"#,
            data = dir.path().join("data").display(),
            fixtures = fixture_plugins().display(),
            installed = dir.path().join("installed").display(),
            granted = dir.path().join("data-in").display(),
        );
        let path = dir.path().join("coach.toml");
        std::fs::write(&path, config).unwrap();
        Home { dir, config: path }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, p: &str, text: &str) -> PathBuf {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Run `coach --config <home> args…` to completion.
    pub fn coach(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_coach-cli"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("COACH_DATA_DIR")
            .env_remove("COACH_DATABASE_URL")
            .env("COACH_SECRET_FOR_TESTS", "hunter2")
            .env(
                "COACH_DATASETS",
                datasets().unwrap_or_else(|| self.path("no-datasets")),
            )
            .output()
            .unwrap();
        Run(out)
    }

    pub fn config(&self) -> coach::config::Config {
        coach::config::Config::load(Some(&self.config)).unwrap()
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn ok(&self) -> bool {
        self.0.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn all(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        )
    }
    #[track_caller]
    pub fn expect_ok(&self) -> &Self {
        assert!(self.ok(), "coach failed:\n{}", self.all());
        self
    }
    #[track_caller]
    pub fn expect_failure_with(&self, needle: &str) -> &Self {
        assert!(!self.ok(), "coach should have failed:\n{}", self.all());
        assert_eq!(self.0.status.code(), Some(1), "exit code:\n{}", self.all());
        assert!(
            self.all().contains(needle),
            "expected `{needle}` in:\n{}",
            self.all()
        );
        self
    }
}

/// A tiny labelled dataset in Coach's JSONL, for workflows that only need
/// some data to hand a trainer.
pub const TINY: &str = r#"{"text": "hello there", "intent": "greet"}
{"text": "hi", "intent": "greet"}
{"text": "good morning", "intent": "greet"}
{"text": "bye", "intent": "goodbye"}
{"text": "see you later", "intent": "goodbye"}
{"text": "good night", "intent": "goodbye"}
"#;

/// A workflow that reads `data` and hands it to `trainer`; the hostile
/// fixtures get their `mode`.
pub fn train_workflow(data: &Path, trainer: &str) -> String {
    let with = match trainer {
        "loop-forever" | "alloc-forever" | "spam-output" | "panicker" | "sleep-forever"
        | "unsent-body" => {
            format!("with = {{ mode = \"{trainer}\" }}\n")
        }
        _ => String::new(),
    };
    format!(
        r#"version = 1
name = "wf-{trainer}"

[[step]]
id = "data"
uses = "source-files"
with = {{ format = "jsonl", path = "{}" }}

[[step]]
id = "train"
uses = "{trainer}"
needs = ["data"]
{with}"#,
        data.display()
    )
}

/// A database of its own on the machine's PostgreSQL, dropped after.
pub struct Postgres {
    admin: String,
    name: String,
    pub url: String,
}

impl Postgres {
    pub fn create() -> Postgres {
        let admin = std::env::var("COACH_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!(
            "coach_e2e_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        Postgres::admin(&admin, &format!("CREATE DATABASE {name}"));
        let (base, _) = admin.rsplit_once('/').unwrap();
        Postgres {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }

    fn admin(url: &str, sql: &str) {
        use sea_orm::ConnectionTrait;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let db = sea_orm::Database::connect(url)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {url} is required for this test: {e}"));
            db.execute_unprepared(sql).await.unwrap();
            db.close().await.unwrap();
        });
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        Postgres::admin(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The conversations of the newest snapshot of `dataset`, as (id, [(role,
/// text)]).
pub fn snapshot_conversations(home: &Home, dataset: &str) -> Vec<(String, Vec<(String, String)>)> {
    let config = home.config();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = coach::store::Store::connect(&config.database_url())
            .await
            .unwrap();
        let v = store
            .latest_dataset_version(dataset)
            .await
            .unwrap()
            .expect("a snapshot");
        store
            .load_snapshot_conversations(v)
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                let turns = c
                    .turns
                    .iter()
                    .map(|t| (t.role.as_str().to_owned(), t.text.clone()))
                    .collect();
                (c.id, turns)
            })
            .collect()
    })
}
