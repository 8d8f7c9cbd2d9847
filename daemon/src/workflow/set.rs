//! The daemon's workflows: every `*.toml` in the workflow folders, each kept
//! at its last good version. A file that fails validation keeps the last
//! good version in service and carries its located errors until fixed.
//!
//! Whoever acts on the set (the triggers) subscribes to it
//! ([`WorkflowSet::subscribe`]) and is told after every reload that
//! changed something; nothing in here calls out.

use super::error::Errors;
use super::{Catalog, Workflow};
use crate::core::sync::ReadWrite;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// A version of a workflow that passed validation.
#[derive(Debug, Clone)]
pub struct Good {
    pub workflow: Arc<Workflow>,
    /// The file's text (saved with each run, for resuming).
    pub text: Arc<str>,
    pub loaded_at: DateTime<Utc>,
}

impl Good {
    /// A workflow that just passed validation, with its file's text.
    pub fn new(workflow: Workflow, text: String) -> Good {
        Good {
            workflow: Arc::new(workflow),
            text: Arc::from(text),
            loaded_at: Utc::now(),
        }
    }
}

/// One workflow file as the daemon sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: PathBuf,
    /// The version in service, if any version ever passed.
    pub good: Option<Good>,
    /// Why the file on disk now is not in service (located errors).
    pub error: Option<String>,
    /// Hash of the text (and scripts) last read, good or not.
    seen: String,
    /// The script files the last parse used.
    deps: Vec<PathBuf>,
}

impl Entry {
    /// The workflow's name: from its good version, else the file's stem.
    pub fn name(&self) -> String {
        match &self.good {
            Some(g) => g.workflow.name.to_string(),
            None => self
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Loaded { name: String, version: String },
    Rejected { file: PathBuf, errors: String },
    Removed { name: String },
}

pub struct WorkflowSet {
    entries: RwLock<BTreeMap<PathBuf, Entry>>,
    /// Bumped after every reload that changed something.
    changed: watch::Sender<u64>,
}

impl Default for WorkflowSet {
    fn default() -> Self {
        WorkflowSet {
            entries: RwLock::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl WorkflowSet {
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.reading().values().cloned().collect()
    }

    /// The workflows in service now (those with a good version).
    pub fn good(&self) -> Vec<Good> {
        self.entries
            .reading()
            .values()
            .filter_map(|e| e.good.clone())
            .collect()
    }

    /// Told (the value changes) after every reload that changed the set.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The entry of workflow `name`.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.entries().into_iter().find(|e| e.name() == name)
    }

    /// Read the workflow folders again. Unchanged files are not parsed
    /// again unless `recheck` (the plugins changed under them); `check`
    /// runs on each parsed workflow (can this machine hold its GPU
    /// requests?).
    pub fn reload(
        &self,
        dirs: &[PathBuf],
        catalog: &Catalog,
        check: &dyn Fn(&Workflow) -> Result<(), Errors>,
        recheck: bool,
    ) -> Vec<Change> {
        let changes = self.read_folders(dirs, catalog, check, recheck);
        if !changes.is_empty() {
            self.changed.send_modify(|n| *n += 1);
        }
        changes
    }

    fn read_folders(
        &self,
        dirs: &[PathBuf],
        catalog: &Catalog,
        check: &dyn Fn(&Workflow) -> Result<(), Errors>,
        recheck: bool,
    ) -> Vec<Change> {
        let mut files: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        let mut changes = Vec::new();
        let mut entries = self.entries.writing();
        let gone: Vec<PathBuf> = entries
            .keys()
            .filter(|k| !files.contains(k))
            .cloned()
            .collect();
        for f in gone {
            if let Some(e) = entries.remove(&f) {
                changes.push(Change::Removed { name: e.name() });
            }
        }
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    let errors = format!("{}: cannot read the workflow: {e}", file.display());
                    let entry = entries.entry(file.clone()).or_insert_with(|| Entry {
                        file: file.clone(),
                        good: None,
                        error: None,
                        seen: String::new(),
                        deps: Vec::new(),
                    });
                    if entry.error.as_ref() != Some(&errors) {
                        entry.error = Some(errors.clone());
                        changes.push(Change::Rejected { file, errors });
                    }
                    continue;
                }
            };
            // The file and the scripts it used last time: a script edit is
            // a change too.
            let deps: BTreeMap<PathBuf, String> = entries
                .get(&file)
                .map(|e| e.deps.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    let source = std::fs::read_to_string(&p).unwrap_or_default();
                    (p, source)
                })
                .collect();
            let hash = super::version_hash(&text, &deps);
            if !recheck && entries.get(&file).is_some_and(|e| e.seen == hash) {
                continue;
            }
            let parsed = Workflow::parse(&file, &text, catalog)
                .and_then(|wf| check(&wf).map(|()| wf))
                .map_err(|e| e.to_string());
            // Two files may not claim one name.
            let parsed = parsed.and_then(|wf| {
                match entries.values().find(|o| {
                    o.file != file && o.good.as_ref().is_some_and(|g| g.workflow.name == wf.name)
                }) {
                    Some(other) => Err(format!(
                        "{}: workflow name `{}` is already used by {}",
                        file.display(),
                        wf.name,
                        other.file.display()
                    )),
                    None => Ok(wf),
                }
            });
            let entry = entries.entry(file.clone()).or_insert_with(|| Entry {
                file: file.clone(),
                good: None,
                error: None,
                seen: String::new(),
                deps: Vec::new(),
            });
            entry.seen = hash;
            match parsed {
                Ok(wf) => {
                    let scripts = wf.script_files();
                    entry.deps = scripts.keys().cloned().collect();
                    entry.seen = super::version_hash(&text, &scripts);
                    let same = entry
                        .good
                        .as_ref()
                        .is_some_and(|g| g.workflow.hash == wf.hash && !recheck);
                    entry.error = None;
                    if !same {
                        changes.push(Change::Loaded {
                            name: wf.name.to_string(),
                            version: wf.hash.clone(),
                        });
                        entry.good = Some(Good {
                            workflow: Arc::new(wf),
                            text: Arc::from(text),
                            loaded_at: Utc::now(),
                        });
                    }
                }
                Err(errors) => {
                    entry.error = Some(errors.clone());
                    changes.push(Change::Rejected { file, errors });
                }
            }
        }
        changes
    }
}
