//! Bad input gets a clear, located error, and nothing stored is lost.

use crate::common::*;

#[test]
fn validate_prints_three_located_errors() {
    let home = Home::new("");
    let wf = home.write(
        "three-faults.toml",
        r#"version = 1
name = "three-faults"

[[step]]
id = "data"
uses = "sorce-files"

[[step]]
id = "train"
uses = "trainer-intent"
needs = ["data"]
with = { epochs = 5, sede = 7 }
retires = 2
"#,
    );
    let run = home.coach(&["validate", wf.to_str().unwrap()]);
    run.expect_failure_with("3 error(s)");
    let out = run.stdout();
    let file = wf.display().to_string();
    for (loc, what) in [
        ("6:8", "unknown plugin `sorce-files`"),
        ("12:22", "unknown parameter `sede`"),
        ("13:1", "unknown key `retires`"),
    ] {
        assert!(
            out.contains(&format!("{file}:{loc}: {what}")),
            "missing {loc} {what} in:\n{out}"
        );
    }
}

#[test]
fn validate_accepts_the_shipped_workflows() {
    let home = Home::new("");
    home.coach(&["validate", workspace().join("workflows").to_str().unwrap()])
        .expect_ok();
}

#[test]
fn run_refuses_an_invalid_workflow_before_doing_anything() {
    let home = Home::new("");
    let wf = home.write("cycle.toml", "version = 1\nname = \"c\"\n[[step]]\nid = \"a\"\nkind = \"split\"\nneeds = [\"b\"]\n[[step]]\nid = \"b\"\nkind = \"split\"\nneeds = [\"a\"]\n");
    home.coach(&["run", wf.to_str().unwrap()])
        .expect_failure_with("steps form a cycle: a → b → a");
    let runs = home.coach(&["runs", "list", "--json"]);
    assert_eq!(runs.expect_ok().stdout().trim(), "[]");
}

#[test]
fn bad_dataset_lines_are_reported_and_the_bad_fraction_enforced() {
    let home = Home::new("");
    let mut data = TINY.repeat(3);
    data.push_str("this is not json\n{\"text\": \"x\"}\n");
    let file = home.write("data-in/mixed.jsonl", &data);
    // Default: at most 5% malformed; 2 of 20 fails, naming the first line.
    let wf = home.write("wf.toml", &train_workflow(&file, "trainer-intent"));
    home.coach(&["run", wf.to_str().unwrap()])
        .expect_failure_with(&format!(
            "2 of 20 records are malformed, more than the allowed 5.0%; first: {}:19: not JSON",
            file.display()
        ));
    // A looser threshold runs, and reports where the bad records are.
    let loose = train_workflow(&file, "trainer-intent")
        .replace("path = ", "max_bad_fraction = 0.2, path = ");
    let wf = home.write("wf-loose.toml", &loose);
    let run = home.coach(&["run", wf.to_str().unwrap()]);
    run.expect_ok();
    assert!(
        run.stderr().contains(&format!(
            "skipped 2 malformed record(s): {}:19: not JSON",
            file.display()
        )),
        "{}",
        run.all()
    );
    assert!(
        run.stderr()
            .contains(&format!("{}:20: bad example", file.display())),
        "{}",
        run.all()
    );
}

#[test]
fn a_corrupted_artifact_is_refused_by_hash() {
    let home = Home::new("");
    let wf = workspace().join("workflows/quickstart.toml");
    home.coach(&["run", wf.to_str().unwrap()]).expect_ok();
    let show = home.coach(&["models", "show", "latest", "--json"]);
    let m: serde_json::Value = serde_json::from_str(&show.expect_ok().stdout()).unwrap();
    let hash = m["artifact"]["sha256"].as_str().unwrap();
    let path = home
        .path("data/artifacts/sha256")
        .join(&hash[..2])
        .join(hash);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    home.coach(&["predict", "--model", "latest", "hello"])
        .expect_failure_with(&format!("artifact {hash} is corrupt"));
    // The model's record is intact.
    home.coach(&["models", "show", "latest"]).expect_ok();
}

#[test]
fn a_plugin_file_of_garbage_fails_its_step_by_name() {
    let home = Home::new("");
    let dir = home.path("installed/garbage");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        "id = \"garbage\"\nversion = \"1.0.0\"\nkind = \"trainer\"\napi = \"0.1.0\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("garbage.wasm"), b"\0asm this is not a component").unwrap();
    let file = home.write("data-in/tiny.jsonl", TINY);
    let wf = home.write("wf.toml", &train_workflow(&file, "garbage"));
    home.coach(&["run", wf.to_str().unwrap()])
        .expect_failure_with("step `train`: plugin `garbage` cannot be loaded");
}

#[test]
fn a_named_pipe_is_refused_before_the_plugin_runs() {
    // In a granted folder: a reader would wait on it, past every deadline,
    // for as long as nothing writes to it.
    let home = Home::new("");
    let pipe = home.path("data-in/pipe.jsonl");
    std::fs::create_dir_all(pipe.parent().unwrap()).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    let wf = home.write("wf.toml", &train_workflow(&pipe, "trainer-intent"));
    crate::sandbox::run_within(&home, &wf, std::time::Duration::from_secs(60))
        .expect_failure_with("step `data`: plugin `source-files` may not read")
        .expect_failure_with("it is not a plain file or a folder");
}

#[test]
fn a_path_outside_the_grant_is_refused_before_the_plugin_runs() {
    let home = Home::new("");
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("secret.jsonl");
    std::fs::write(&file, TINY).unwrap();
    let wf = home.write("wf.toml", &train_workflow(&file, "trainer-intent"));
    home.coach(&["run", wf.to_str().unwrap()])
        .expect_failure_with("step `data`: plugin `source-files` may not read");
}
