//! The layers of `daemon/src/` import only downward. The order is the one
//! `docs/architecture.md` gives (its ```layers block, read here, so the
//! document and the check cannot drift); every module must be in it, and
//! every `crate::…` path of every module — `use` lines, grouped imports,
//! paths written inline — must name a module of a lower layer (or its own).
//! Test code may reach anywhere: a test builds its fixture with whatever
//! it needs.

use crate::common::workspace;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, top first, and the pairs that may not meet even downward.
struct Layers {
    rank: BTreeMap<String, usize>,
    never: Vec<(String, String)>,
}

fn read_layers(doc: &str) -> Layers {
    let block = doc
        .split("```layers")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md has a ```layers block");
    let mut rank = BTreeMap::new();
    let mut never = Vec::new();
    let mut layer = 0;
    for line in block.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pair) = line.strip_prefix("never:") {
            let (from, to) = pair.split_once("->").expect("never: a -> b");
            never.push((from.trim().to_owned(), to.trim().to_owned()));
            continue;
        }
        for module in line.split_whitespace() {
            assert!(
                rank.insert(module.to_owned(), layer).is_none(),
                "`{module}` is listed twice"
            );
        }
        layer += 1;
    }
    Layers { rank, never }
}

/// The code of a file without comments and without the items marked
/// `#[cfg(test)]` (a `mod tests;` line, or a block up to its closing
/// brace).
fn product_code(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // Inside a test item: the brace depth so far (`None`: its first line
    // is yet to come).
    let mut test_item: Option<Option<i64>> = None;
    for (i, line) in text.lines().enumerate() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        if code.trim_start().starts_with("#[cfg(test)]") {
            test_item = Some(None);
            continue;
        }
        if let Some(depth) = test_item {
            if code.trim().is_empty() {
                continue;
            }
            let opened = code.matches('{').count() as i64 - code.matches('}').count() as i64;
            let depth = depth.unwrap_or(0) + opened;
            let ends_here = code.contains('}') || code.trim_end().ends_with(';');
            test_item = if depth <= 0 && ends_here {
                None
            } else {
                Some(Some(depth))
            };
            continue;
        }
        out.push((i + 1, code.to_owned()));
    }
    out
}

/// Whether `file` is a test module its parent declares under
/// `#[cfg(test)]` (`mod tests;` beside it).
fn is_test_module(file: &Path) -> bool {
    let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    let Some(dir) = file.parent() else {
        return false;
    };
    let parents = [
        dir.join("mod.rs"),
        dir.with_extension("rs"),
        dir.join("lib.rs"),
    ];
    parents.iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|t| {
            t.replace("\r\n", "\n")
                .contains(&format!("#[cfg(test)]\nmod {stem};"))
        })
    })
}

/// The top-level modules a line of code names through `crate::`.
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the first segment of each
            // top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(ch);
                }
            }
            out.push(first_segment(&item));
        } else {
            out.push(first_segment(after));
        }
        rest = after;
    }
    out.retain(|m| !m.is_empty());
    out
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Every upward import under `src`, as `file:line: why`.
fn violations(src: &Path, layers: &Layers) -> Vec<String> {
    let mut files = Vec::new();
    collect(src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let Some(module) = rel.components().next().map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        }) else {
            continue;
        };
        // The crate root declares the modules; it is no layer.
        if module == "lib" || module == "main" {
            continue;
        }
        if is_test_module(&file) {
            continue;
        }
        let Some(&own) = layers.rank.get(&module) else {
            out.push(format!(
                "{}: module `{module}` is in no layer of docs/architecture.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, code) in product_code(&text) {
            for named in named_modules(&code) {
                if named == module {
                    continue;
                }
                let Some(&theirs) = layers.rank.get(&named) else {
                    continue;
                };
                let forbidden = layers.never.contains(&(module.clone(), named.clone()));
                if theirs <= own || forbidden {
                    out.push(format!(
                        "{}:{line}: `{module}` (layer {own}) imports `{named}` (layer {theirs}){}: {}",
                        file.display(),
                        if forbidden {
                            ", which it never may"
                        } else if theirs == own {
                            ", beside it"
                        } else {
                            ", above it"
                        },
                        code.trim()
                    ));
                }
            }
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let doc = std::fs::read_to_string(workspace().join("docs/architecture.md")).unwrap();
    let layers = read_layers(&doc);
    let src = workspace().join("daemon/src");
    // Every module of the crate is placed.
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if name != "lib" && name != "main" {
            assert!(
                layers.rank.contains_key(&name),
                "daemon/src/{name} is in no layer of docs/architecture.md"
            );
        }
    }
    let found = violations(&src, &layers);
    assert!(
        found.is_empty(),
        "{} import(s) against the layers:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The check finds what it is meant to: an upward import, a grouped one,
/// one written inline, one between siblings, a forbidden pair, and one
/// after a test module; it ignores comments, test modules and the files
/// their parents declare as such.
#[test]
fn the_layer_check_catches_upward_imports() {
    let dir = tempfile::tempdir().unwrap();
    let layers =
        read_layers("```layers\ncli\napi\nservice\nplugin compute\nstore\nnever: cli -> api\n```");
    let write = |path: &str, text: &str| {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "store/mod.rs",
        "use crate::service::Service;\n// crate::api in a comment\n",
    );
    write(
        "service/mod.rs",
        "use crate::{store::Store, api::x};\nfn f() { crate::plugin::y(); }\n",
    );
    write(
        "plugin/mod.rs",
        "use crate::compute::gpus;\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\nfn after() { crate::api::x(); }\n",
    );
    write(
        "cli/mod.rs",
        "use crate::api::router;\nuse crate::store::Store;\n",
    );
    write("compute/mod.rs", "#[cfg(test)]\nmod tests;\n");
    write("compute/tests.rs", "use crate::cli;\n");
    // Not declared as a test module: checked like any file.
    write("store/tests.rs", "use crate::cli;\n");
    let found = violations(dir.path(), &layers);
    let lines: Vec<String> = found
        .iter()
        .map(|v| {
            let rel = v.split_once(dir.path().to_str().unwrap()).unwrap().1;
            rel.split(": ").next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        lines,
        [
            "/cli/mod.rs:1",
            "/plugin/mod.rs:1",
            "/plugin/mod.rs:6",
            "/service/mod.rs:1",
            "/store/mod.rs:1",
            "/store/tests.rs:1",
        ],
        "{found:#?}"
    );
    assert!(found[0].contains("never may"), "{}", found[0]);
    assert!(found[1].contains("beside it"), "{}", found[1]);
    assert!(found[2].contains("imports `api`"), "{}", found[2]);
    assert!(found[3].contains("imports `api`"), "{}", found[3]);
    assert!(found[4].contains("above it"), "{}", found[4]);
}
