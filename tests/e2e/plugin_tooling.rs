//! `coach plugin new/build/check/run/install/list` as a newcomer uses
//! them: a new source from the scaffold, one line edited, built, checked,
//! run in the sandbox, its own tests (native and in the sandbox) passed,
//! installed, and a workflow using it registers a model. Then the checks
//! refuse what the host would refuse, each at its line.

use std::path::Path;
use std::process::Command;

fn coach(config: &Path, cwd: &Path, target: &Path, args: &[&str]) -> super::common::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("COACH_DATA_DIR")
        .env_remove("COACH_DATABASE_URL")
        .output()
        .unwrap();
    super::common::Run(out)
}

#[test]
fn a_new_source_goes_from_scaffold_to_a_registered_model() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path();
    let target = root.join("cargo-target");
    let config = root.join("coach.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nplugin_dirs = [{:?}]\n[limits]\nmemory = \"1GiB\"\ntimeout = \"5m\"\n",
            root.join("data"),
            root.join("installed")
        ),
    )
    .unwrap();
    let c = |cwd: &Path, args: &[&str]| coach(&config, cwd, &target, args);

    let made = c(root, &["plugin", "new", "source", "demo"]);
    made.expect_ok();
    let dir = root.join("demo");
    for f in [
        "Cargo.toml",
        "plugin.toml",
        "src/lib.rs",
        "tests/sandbox.rs",
        "README.md",
        "workflow.toml",
        "vendor/coach-plugin-sdk/wit/coach.wit",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // Not over a folder with something in it.
    c(root, &["plugin", "new", "source", "demo"]).expect_failure_with("not empty");
    c(root, &["plugin", "new", "source", "Bad_Name"]).expect_failure_with("lower-case");

    // The one-line edit: another example.
    let lib = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let edited = text.replacen(
        "    (\"wifi\", \"do you have wifi\"),",
        "    (\"wifi\", \"do you have wifi\"),\n    (\"wifi\", \"can I stream music on your wifi\"),",
        1,
    );
    assert_ne!(text, edited);
    std::fs::write(&lib, edited).unwrap();

    let built = c(&dir, &["plugin", "build"]);
    built.expect_ok();
    assert!(
        built
            .stdout()
            .contains("ok: demo 0.1.0 (source, built against coach:plugin@0.1.1"),
        "{}",
        built.all()
    );
    c(&dir, &["plugin", "check"]).expect_ok();

    let run = c(&dir, &["plugin", "run", "--json", "--batch", "7"]);
    run.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let examples = v["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 31, "{}", run.all());
    assert!(
        examples
            .iter()
            .any(|e| e["text"] == "can I stream music on your wifi")
    );
    assert_eq!(v["checkpoint"], "31");
    assert_eq!(v["batches"], 6);
    // Resuming from a checkpoint, and parameters checked as a step's.
    let resumed = c(&dir, &["plugin", "run", "--json", "--checkpoint", "30"]);
    let v: serde_json::Value = serde_json::from_str(&resumed.expect_ok().stdout()).unwrap();
    assert_eq!(v["examples"].as_array().unwrap().len(), 1);
    c(&dir, &["plugin", "run", "--with", "intent=x"])
        .expect_failure_with("has no parameter `intent`");

    // The scaffold's own tests: native, then in Coach's sandbox.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tested = Command::new(cargo)
        .arg("test")
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .env("COACH_BIN", env!("CARGO_BIN_EXE_coach-cli"))
        .env("COACH_CONFIG", &config)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(tested.status.success(), "{said}");
    assert!(
        said.contains("coach_reads_every_example_in_its_sandbox ... ok"),
        "{said}"
    );

    let installed = c(root, &["plugin", "install", "demo"]);
    installed.expect_ok();
    assert!(root.join("installed/demo/plugin.toml").is_file());
    assert!(root.join("installed/demo/demo.wasm").is_file());
    let listed = c(root, &["plugin", "list"]);
    assert!(
        listed.expect_ok().stdout().contains("demo"),
        "{}",
        listed.all()
    );
    // Installing again replaces it, naming what it replaced.
    let again = c(root, &["plugin", "install", "demo"]);
    assert!(
        again.expect_ok().stdout().contains("replacing 0.1.0"),
        "{}",
        again.all()
    );

    let registered = c(root, &["run", "demo/workflow.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&registered.expect_ok().stdout()).unwrap();
    assert_eq!(v["state"], "succeeded", "{}", registered.all());
    assert_eq!(v["model"]["name"], "demo-intents", "{}", registered.all());

    // What the host would refuse is refused, at its line.
    let manifest = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("memory = \"256MiB\"", "memory = \"8GiB\"")
            .replace("kind = \"source\"", "kind = \"trainer\""),
    )
    .unwrap();
    let checked = c(&dir, &["plugin", "check"]);
    checked.expect_failure_with("above the operator's ceiling of 1 GiB");
    checked.expect_failure_with("plugin.toml:11:10");
    checked.expect_failure_with("does not export `coach:plugin/trainer-api`");
    c(root, &["plugin", "install", "demo"]).expect_failure_with("not installed");
    // The installed copy is untouched.
    let still = std::fs::read_to_string(root.join("installed/demo/plugin.toml")).unwrap();
    assert!(still.contains("kind = \"source\""));
}

#[test]
fn the_sdk_is_ready_to_publish() {
    // Packaged alone and built from the package, as crates.io would.
    let target = tempfile::tempdir().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "publish",
            "--dry-run",
            "--allow-dirty",
            "-p",
            "coach-plugin-sdk",
        ])
        .current_dir(super::common::workspace())
        .env("CARGO_TARGET_DIR", target.path())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Packaged"), "{said}");
}
