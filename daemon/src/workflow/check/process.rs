//! What a process step runs (`command`, `workdir`, `env`) and what any
//! step asks of the machine: `resources` (GPUs, memory) and its placement
//! (`priority`, `queue`, `preemptible`, `max_duration`).

use super::{Checker, Table, kind_of};
use crate::config::units;
use crate::workflow::error::Located;
use crate::workflow::{Placement, ProcessSpec, Resources};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeValue;

impl Checker<'_> {
    /// `command`, `workdir` and `env`: only process steps have them, and
    /// they must have a command.
    pub(super) fn process(
        &mut self,
        t: &Table<'_>,
        what: &str,
        is_process: bool,
        id_span: Range<usize>,
        wf_dir: &Path,
    ) -> Option<ProcessSpec> {
        if !is_process {
            for key in ["command", "workdir", "env"] {
                if let Some((k, _)) = t.get_key_value(key) {
                    self.error(
                        k.span(),
                        format!("`{key}` is for `kind = \"process\"` steps; {what} is not one"),
                    );
                }
            }
            return None;
        }
        let argv = match t.get("command") {
            None => {
                self.error(
                    id_span,
                    format!(
                        "{what} is a process step: give it `command = [\"program\", \"arg\", …]`"
                    ),
                );
                None
            }
            Some(v) => match v.get_ref() {
                DeValue::Array(a) if !a.is_empty() => {
                    let args: Vec<String> = a
                        .iter()
                        .filter_map(|x| self.string(x, "each part of `command`"))
                        .collect();
                    if args.first().is_some_and(String::is_empty) {
                        self.error(v.span(), "`command` starts with an empty program");
                    }
                    Some(args)
                }
                DeValue::Array(_) => {
                    self.error(v.span(), "`command` is empty");
                    None
                }
                other => {
                    self.error(
                        v.span(),
                        format!(
                            "`command` must be an array such as [\"python3\", \"train.py\"] (no shell), found {}",
                            kind_of(other)
                        ),
                    );
                    None
                }
            },
        };
        let workdir = match t.get("workdir") {
            None => wf_dir.to_path_buf(),
            Some(v) => {
                let w = PathBuf::from(self.string(v, "`workdir`").unwrap_or_default());
                let w = if w.is_absolute() { w } else { wf_dir.join(w) };
                if !w.is_dir() {
                    self.error(
                        v.span(),
                        format!("`workdir` {} is not a folder", w.display()),
                    );
                }
                w
            }
        };
        let mut env = BTreeMap::new();
        if let Some(v) = t.get("env") {
            match v.get_ref() {
                DeValue::Table(et) => {
                    for (k, val) in et.iter() {
                        let key = k.get_ref().to_string();
                        let ok = !key.is_empty()
                            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !key.starts_with(|c: char| c.is_ascii_digit());
                        if !ok {
                            self.error(
                                k.span(),
                                format!("`{key}` is not an environment variable name"),
                            );
                        } else if key == "CUDA_VISIBLE_DEVICES" || key.starts_with("COACH_") {
                            self.error(
                                k.span(),
                                format!("`{key}` is set by Coach (to the step's allocation and run); leave it out"),
                            );
                        } else if let Some(x) = self.string(val, &format!("`env.{key}`")) {
                            env.insert(key, x);
                        }
                    }
                }
                other => self.error(
                    v.span(),
                    format!("`env` must be a table of strings, found {}", kind_of(other)),
                ),
            }
        }
        Some(ProcessSpec {
            argv: argv?,
            workdir,
            env,
        })
    }

    /// `resources = { gpus, gpu_memory, cpus, memory, exclusive }`.
    pub(super) fn resources(
        &mut self,
        t: &Table<'_>,
        what: &str,
        is_process: bool,
    ) -> (Resources, Option<Located>) {
        let mut r = Resources {
            exclusive: true,
            ..Default::default()
        };
        let Some(v) = t.get("resources") else {
            return (r, None);
        };
        let at = Located::at(self.file, self.text, v.span(), "");
        let DeValue::Table(rt) = v.get_ref() else {
            self.error(
                v.span(),
                format!("`resources` must be a table such as {{ gpus = 1, gpu_memory = \"20GiB\" }}, found {}", kind_of(v.get_ref())),
            );
            return (r, None);
        };
        self.unknown_keys(
            rt,
            &["gpus", "gpu_memory", "cpus", "memory", "exclusive"],
            "`resources`",
        );
        let int = |c: &mut Self, key: &str, min: u32| -> Option<u32> {
            let v = rt.get(key)?;
            match v.get_ref() {
                DeValue::Integer(i) => match i.as_str().parse::<u32>() {
                    Ok(n) if n >= min => Some(n),
                    _ => {
                        c.error(
                            v.span(),
                            format!("`resources.{key}` must be a whole number of at least {min}"),
                        );
                        None
                    }
                },
                other => {
                    c.error(
                        v.span(),
                        format!(
                            "`resources.{key}` must be a whole number, found {}",
                            kind_of(other)
                        ),
                    );
                    None
                }
            }
        };
        let size = |c: &mut Self, key: &str| -> Option<u64> {
            let v = rt.get(key)?;
            let s = c.string(v, &format!("`resources.{key}`"))?;
            match units::parse_size(&s) {
                Ok(n) if n > 0 => Some(n),
                Ok(_) => {
                    c.error(
                        v.span(),
                        format!("`resources.{key}` must be more than zero"),
                    );
                    None
                }
                Err(e) => {
                    c.error(v.span(), e);
                    None
                }
            }
        };
        r.gpus = int(self, "gpus", 0).unwrap_or(0);
        r.cpus = int(self, "cpus", 1);
        r.gpu_memory = size(self, "gpu_memory").unwrap_or(0);
        r.memory = size(self, "memory");
        // Declaring GPU memory asks for a share of a GPU, unless told otherwise.
        r.exclusive = match rt.get("exclusive") {
            None => r.gpu_memory == 0,
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => *b,
                other => {
                    self.error(
                        v.span(),
                        format!(
                            "`resources.exclusive` must be true or false, found {}",
                            kind_of(other)
                        ),
                    );
                    true
                }
            },
        };
        if r.gpus > 0 && !is_process {
            self.error(
                v.span(),
                format!("{what} asks for GPUs, but plugins run in the sandbox on the CPU; GPU work runs as a `kind = \"process\"` step"),
            );
        }
        if r.gpus == 0 && r.gpu_memory > 0 {
            self.error(v.span(), "`resources.gpu_memory` without `gpus`");
        }
        (r, Some(at))
    }

    /// `priority`, `queue`, `preemptible`, `max_duration`.
    pub(super) fn placement(&mut self, t: &Table<'_>) -> Placement {
        use crate::scheduler::gpu::Priority;
        let mut p = Placement::default();
        if let Some(v) = t.get("priority")
            && let Some(s) = self.string(v, "`priority`")
        {
            p.priority = Priority::parse(&s).unwrap_or_else(|| {
                self.error(
                    v.span(),
                    format!("`priority` is `{s}`; expected low, normal, high or critical"),
                );
                Priority::Normal
            });
        }
        if let Some(v) = t.get("queue")
            && let Some(s) = self.string(v, "`queue`")
        {
            if crate::core::ids::is_identifier(&s) {
                p.queue = s;
            } else {
                self.error(
                    v.span(),
                    format!("queue `{s}` must be letters, digits, `-` or `_`"),
                );
            }
        }
        if let Some(v) = t.get("preemptible") {
            match v.get_ref() {
                DeValue::Boolean(b) => p.preemptible = *b,
                other => self.error(
                    v.span(),
                    format!(
                        "`preemptible` must be true or false, found {}",
                        kind_of(other)
                    ),
                ),
            }
        }
        if let Some(v) = t.get("max_duration")
            && let Some(s) = self.string(v, "`max_duration`")
        {
            match units::parse_duration(&s) {
                Ok(d) if d > Duration::ZERO => p.max_duration = Some(d),
                Ok(_) => self.error(v.span(), "`max_duration` must be longer than zero"),
                Err(e) => self.error(v.span(), e),
            }
        }
        p
    }
}
