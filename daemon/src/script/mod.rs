//! The scripting layer: Rhai for gates, step conditions, data rules and
//! hyperparameter rules, so ops teams can say *whether* a model ships,
//! *what* data trains it and *how* — in a few lines beside the workflow.
//!
//! One sandboxed [`rhai::Engine`] per process ([`engine`]): no modules, no
//! `eval`, no file, network or process access; limits on operations, call
//! depth, expression depth, string/array/map sizes and wall time per
//! evaluation ([`Limits`]); `print` and `debug` go to tracing with the run
//! id. Scripts are compiled once per content ([`compile`], an AST cache) and
//! every error carries the script's file, line and column.
//!
//! The functions and variables a script sees are registered in [`api`] and
//! documented in `docs/scripting.md`; a test checks the two agree.

pub mod api;
pub mod convert;
pub mod hooks;
pub mod views;

use crate::core::sync::Lock;
use rhai::{AST, Dynamic, Engine, EvalAltResult, Position, Scope};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Ceilings for one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub operations: u64,
    pub call_depth: usize,
    pub expression_depth: usize,
    pub string_bytes: usize,
    pub array_items: usize,
    pub map_items: usize,
    pub wall_time: Duration,
}

#[cfg(not(fuzzing))]
pub const LIMITS: Limits = Limits {
    operations: 10_000_000,
    call_depth: 64,
    expression_depth: 64,
    string_bytes: 1 << 20,
    array_items: 1_000_000,
    map_items: 100_000,
    wall_time: Duration::from_secs(2),
};

/// Under the fuzzer the same checks with smaller ceilings, so that a
/// script that runs to its limit costs milliseconds, not seconds.
#[cfg(fuzzing)]
pub const LIMITS: Limits = Limits {
    operations: 100_000,
    call_depth: 64,
    expression_depth: 64,
    string_bytes: 1 << 20,
    array_items: 100_000,
    map_items: 100_000,
    wall_time: Duration::from_millis(100),
};

/// Where a script comes from: a file, or an inline expression in a
/// workflow (with the position of its first character there).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    File(PathBuf),
    Inline {
        file: PathBuf,
        line: usize,
        column: usize,
    },
}

impl Origin {
    /// An error at a position inside the script (`Position::NONE`: the
    /// script as a whole).
    pub fn error(&self, pos: Position, message: impl Into<String>) -> ScriptError {
        let (line, col) = (pos.line().unwrap_or(0), pos.position().unwrap_or(0));
        let (file, line, column) = match self {
            Origin::File(f) => (f.clone(), line, col),
            Origin::Inline {
                file,
                line: l,
                column: c,
            } => {
                // Inline expressions sit in a TOML string: past its quote.
                let column = if line <= 1 { c + col } else { col };
                (file.clone(), l + line.saturating_sub(1), column)
            }
        };
        ScriptError {
            file,
            line,
            column,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Inline { file, line, column } => {
                write!(f, "inline script at {}:{line}:{column}", file.display())
            }
        }
    }
}

/// Where a script runs, which fixes the variables it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// A `gate` step or a step's `when`: returns a verdict.
    Verdict,
    /// A `rules` step: defines `filter(example)` and/or `map(example)`.
    Rules,
    /// A step's `params`: returns a map of step parameters.
    Params,
    /// `[trigger] when`: returns a verdict; true starts a run.
    Trigger,
    /// An experiment's decision: defines `decide(results)`, which returns
    /// `promote(arm, reason)`, `rollback(reason)` or `keep_running(reason)`.
    Decide,
}

impl Hook {
    /// The variables a script of this hook sees (see `docs/scripting.md`).
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Hook::Verdict => &[
                "run",
                "candidate",
                "production",
                "evaluation",
                "dataset",
                "steps",
                "quality",
                "reviewed",
            ],
            Hook::Rules | Hook::Decide => &[],
            Hook::Params => &["run", "dataset"],
            Hook::Trigger => &[
                "now",
                "last_run",
                "recent_runs",
                "model",
                "data",
                "conversations",
                "feedback",
                "reviews",
                "quality",
            ],
        }
    }
}

/// A compiled script.
#[derive(Debug)]
pub struct Script {
    pub origin: Origin,
    pub hook: Hook,
    pub source: String,
    /// SHA-256 of the source.
    pub hash: String,
    pub ast: AST,
}

impl Script {
    /// Whether the script defines function `name` with `arity` parameters.
    pub fn defines(&self, name: &str, arity: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }
}

/// A script failed: where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    pub file: PathBuf,
    /// 0 when the error is about the script as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ScriptError {}

/// The process's script engine.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| build(LIMITS))
}

thread_local! {
    /// The evaluation running on this thread: its deadline and run id.
    static CURRENT: RefCell<Option<(Instant, String)>> = const { RefCell::new(None) };
}

fn build(limits: Limits) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(limits.operations)
        .set_max_call_levels(limits.call_depth)
        .set_max_expr_depths(limits.expression_depth, limits.expression_depth)
        .set_max_string_size(limits.string_bytes)
        .set_max_array_size(limits.array_items)
        .set_max_map_size(limits.map_items)
        .set_max_variables(10_000)
        .set_max_functions(1_000)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);
    // No code from strings.
    e.disable_symbol("eval");
    e.on_progress(|ops| {
        // Checking the clock every operation would cost more than the
        // script; every 4096 is well under a millisecond.
        if ops % 4096 != 0 {
            return None;
        }
        CURRENT.with(|c| match &*c.borrow() {
            Some((deadline, _)) if Instant::now() > *deadline => Some(Dynamic::from(format!(
                "ran past its {} s wall-time limit",
                LIMITS.wall_time.as_secs_f64()
            ))),
            _ => None,
        })
    });
    e.on_print(|s| {
        CURRENT.with(|c| {
            let run = c.borrow().as_ref().map(|x| x.1.clone()).unwrap_or_default();
            tracing::info!(run = %run, "script: {s}");
        })
    });
    e.on_debug(|s, src, pos| {
        CURRENT.with(|c| {
            let run = c.borrow().as_ref().map(|x| x.1.clone()).unwrap_or_default();
            tracing::debug!(run = %run, source = src.unwrap_or(""), line = pos.line().unwrap_or(0), "script: {s}");
        })
    });
    api::register(&mut e);
    views::register(&mut e);
    e
}

type CacheKey = (Origin, Hook, String);

/// Compiled scripts by origin, hook and content.
fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<Script>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<Script>>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Compile `source` for `hook` (once per origin, hook and content). A
/// variable the hook does not provide is a compile error.
pub fn compile(origin: Origin, hook: Hook, source: &str) -> Result<Arc<Script>, ScriptError> {
    let hash = crate::core::hash::sha256_hex(source.as_bytes());
    let key = (origin.clone(), hook, hash.clone());
    if let Some(s) = cache().locked().get(&key) {
        return Ok(s.clone());
    }
    // Declared so that strict variables can check names; as variables, not
    // constants, or the optimiser would fold their placeholder values in.
    let mut scope = Scope::new();
    for v in hook.variables() {
        scope.push(*v, ());
    }
    let ast = engine()
        .compile_with_scope(&scope, source)
        .map_err(|e| origin.error(e.position(), format!("syntax error: {}", e.err_type())))?;
    let script = Arc::new(Script {
        origin,
        hook,
        source: source.to_owned(),
        hash,
        ast,
    });
    let mut c = cache().locked();
    // Old versions go when the cache grows; scripts are small.
    if c.len() > 1000 {
        c.clear();
    }
    c.insert(key, script.clone());
    Ok(script)
}

/// Read and compile a script file.
pub fn compile_file(path: &Path, hook: Hook) -> Result<Arc<Script>, ScriptError> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        Origin::File(path.to_path_buf())
            .error(Position::NONE, format!("cannot read the script: {e}"))
    })?;
    compile(Origin::File(path.to_path_buf()), hook, &source)
}

/// Run `f` as one evaluation: with a deadline and the run id for `print`.
pub(crate) fn evaluation<T>(run: &str, f: impl FnOnce() -> T) -> T {
    let previous = CURRENT.with(|c| {
        c.borrow_mut()
            .replace((Instant::now() + LIMITS.wall_time, run.to_owned()))
    });
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = previous);
    out
}

/// Turn a runtime error into a located, named one.
pub fn runtime_error(script: &Script, e: &EvalAltResult) -> ScriptError {
    use rhai::EvalAltResult as E;
    let message = match e {
        E::ErrorTooManyOperations(_) => format!(
            "exceeded its limit of {} operations (an endless loop?)",
            LIMITS.operations
        ),
        E::ErrorStackOverflow(_) => format!(
            "exceeded its call depth limit of {} (endless recursion?)",
            LIMITS.call_depth
        ),
        E::ErrorDataTooLarge(what, _) => format!(
            "{what} exceeds its limit (strings {} bytes, arrays {} items, maps {} items)",
            LIMITS.string_bytes, LIMITS.array_items, LIMITS.map_items
        ),
        E::ErrorTerminated(why, _) => why.to_string(),
        E::ErrorInFunctionCall(name, _, inner, _) => {
            let inner_error = runtime_error(script, inner);
            return script.origin.error(
                inner.position(),
                format!("in `{name}`: {}", inner_error.message),
            );
        }
        other => other
            .to_string()
            .split(" (line ")
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    script.origin.error(e.position(), message)
}

/// Evaluate a script's top level with `scope`.
pub fn eval(script: &Script, run: &str, scope: &mut Scope) -> Result<Dynamic, ScriptError> {
    evaluation(run, || {
        engine()
            .eval_ast_with_scope::<Dynamic>(scope, &script.ast)
            .map_err(|e| runtime_error(script, &e))
    })
}

/// Call function `name` of a script.
pub fn call(
    script: &Script,
    scope: &mut Scope,
    name: &str,
    args: impl rhai::FuncArgs,
) -> Result<Dynamic, ScriptError> {
    let options = rhai::CallFnOptions::new()
        .eval_ast(false)
        .rewind_scope(true);
    engine()
        .call_fn_with_options::<Dynamic>(options, scope, &script.ast, name, args)
        .map_err(|e| runtime_error(script, &e))
}

#[cfg(test)]
mod tests;
