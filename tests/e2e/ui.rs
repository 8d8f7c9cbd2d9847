//! Golden files for user-facing workflow errors: each `tests/ui/*.toml`
//! must produce exactly the neighbouring `.err`. `COACH_BLESS=1` rewrites
//! them after a deliberate change.

use crate::common::workspace;
use coach::plugin::PluginHost;
use coach::workflow::Workflow;

#[test]
fn workflow_errors_match_their_golden_files() {
    // Only the built-in plugins, so the goldens do not depend on fixtures.
    let home = tempfile::tempdir().unwrap();
    let config = coach::config::Config::from_toml("", home.path(), None).unwrap();
    let host = PluginHost::new(&config).unwrap();
    let catalog = host.catalog();
    let dir = workspace().join("tests/ui");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    let bless = std::env::var_os("COACH_BLESS").is_some();
    let mut mismatches = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = Path::new(f.file_name().unwrap());
        let rendered = match Workflow::parse(name, &text, &catalog) {
            Ok(_) => "ok\n".to_owned(),
            Err(es) => {
                es.0.iter()
                    .map(|e| e.render() + "\n")
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        let golden = f.with_extension("err");
        if bless {
            std::fs::write(&golden, &rendered).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != rendered {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{rendered}",
                f.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

use std::path::Path;
