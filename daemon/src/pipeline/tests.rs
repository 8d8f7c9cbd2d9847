//! Resuming reads typed step outputs: every kind a step can store is
//! written as the runner writes it, read back as a resumed run reads it,
//! and reloaded from a real store and artifact folder.

use super::*;
use crate::core::evaluation::score;
use crate::core::example::{EntitySpan, Example, Split};
use crate::core::output::{
    ArtifactFile, DatasetOutput, ModelOutput, ProcessOutput, Registration, RuleStats,
};
use crate::core::state::TriggerKind;
use crate::store::queue::{Submission, Submitted};

struct Fixture {
    _dir: tempfile::TempDir,
    runner: Runner,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config::from_toml(
        &format!("data_dir = {:?}", dir.path().join("data")),
        dir.path(),
        None,
    )
    .unwrap();
    let runner = Runner {
        host: Arc::new(PluginHost::new(&config).unwrap()),
        store: Store::connect(&config.database_url()).await.unwrap(),
        artifacts: Artifacts::new(config.artifacts_dir()),
        gpus: GpuQueue::new(config.gpus.clone()),
        slurm: Arc::new(Slurm::new(config.slurm.clone())),
        work_dir: config.work_dir(),
        process_grace: std::time::Duration::from_secs(1),
    };
    Fixture { _dir: dir, runner }
}

fn examples() -> Vec<Example> {
    (0..12)
        .map(|i| Example {
            text: format!("book a table for {i}"),
            intent: if i % 3 == 0 { "oos" } else { "book" }.into(),
            entities: vec![EntitySpan {
                entity: "count".into(),
                start: 17,
                end: 18,
                value: i.to_string(),
            }],
            split: [Split::Train, Split::Validation, Split::Test][i % 3],
        })
        .collect()
}

/// Every kind of step output, each pointing at real rows and files.
async fn outputs(runner: &Runner) -> Vec<StepOutput> {
    let store = &runner.store;
    let rows = examples();
    let (version, hash) = store
        .save_dataset_version("wf/data", &rows, serde_json::json!({}))
        .await
        .unwrap();
    let dataset = Dataset::new(version, hash.clone(), rows).out;
    let artifact = runner.artifacts.put(b"model bytes").unwrap().to_string();
    let scripts = BTreeMap::new();
    let Submitted::Run(run) = store
        .submit(Submission {
            workflow: "wf",
            file: "wf.toml",
            hash: "v1",
            text: "version = 1",
            scripts: &scripts,
            trigger: TriggerKind::Cli,
            scheduled_for: chrono::Utc::now(),
            detail: None,
            exclusive: false,
            claimed_by: Some("cli:test"),
        })
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    let model = ModelOutput {
        artifact: artifact.clone(),
        model_bytes: 11,
        plugin: "trainer-intent".into(),
        plugin_version: "0.1.0".into(),
        plugin_hash: "ab".repeat(32),
        config_hash: "cd".repeat(32),
        dataset_version: version,
        intents: vec!["book".into(), "oos".into()],
        base_model: None,
        metrics: [("val_accuracy".to_owned(), 0.75)].into(),
    };
    let registered =
        crate::registry::models::register_trained(store, run.run_id(), "bot", &model, &hash, None)
            .await
            .unwrap();
    vec![
        StepOutput::Dataset(dataset.clone()),
        StepOutput::Ruled {
            dataset: dataset.clone(),
            stats: RuleStats {
                kept: 12,
                dropped: 0,
                changed: 3,
            },
        },
        StepOutput::Model(model),
        StepOutput::Evaluation(score(
            "test",
            &[
                ("book".into(), "book".into(), 0.9),
                ("oos".into(), "book".into(), 0.3),
            ],
            "oos",
            10,
        )),
        StepOutput::Verdict(Verdict {
            pass: true,
            reason: Some("better".into()),
        }),
        StepOutput::Registered(Registration {
            model: registered.id,
            name: registered.name.clone(),
            version: registered.version,
            artifact,
        }),
        StepOutput::Process(ProcessOutput {
            executor: "local".into(),
            devices: vec!["0".into(), "1".into()],
            slurm_job: None,
            seconds: 3.5,
            metrics: 2,
            final_metrics: [("loss".to_owned(), 0.1)].into(),
            bad_lines: 1,
            artifacts: vec![ArtifactFile {
                path: "/w/run-1/train/model.bin".into(),
                sha256: "ef".repeat(32),
                bytes: 5,
            }],
            checkpoint_dir: "/w/run-1/train".into(),
        }),
    ]
}

#[tokio::test]
async fn every_step_output_restores_what_it_names() {
    let f = fixture().await;
    let all = outputs(&f.runner).await;
    let kinds: Vec<OutputKind> = all.iter().map(StepOutput::kind).collect();
    assert_eq!(kinds.len(), 7, "one of each kind");
    for out in all {
        // As the store keeps it, and as a resumed run reads it.
        let text = out.to_json().to_string();
        let read = StepOutput::from_stored(&text, out.kind()).unwrap();
        let restored = Output::restore(&f.runner, read).await.unwrap();
        assert_eq!(restored.stored(), out, "{text}");
        match &restored {
            Output::Dataset(d) | Output::Ruled(d, _) => assert_eq!(d.rows, examples()),
            Output::Model(m) => {
                assert_eq!(m.bytes, b"model bytes");
                assert_eq!(m.dataset.rows, examples());
            }
            Output::Registered(m) => assert_eq!(m.name, "bot"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_missing_snapshot_or_artifact_fails_the_resume_with_the_reason() {
    let f = fixture().await;
    let gone = StepOutput::Dataset(DatasetOutput {
        dataset_version: 404,
        examples: 1,
        hash: "x".into(),
        splits: None,
        conversations: 0,
    });
    let e = Output::restore(&f.runner, gone).await.unwrap_err();
    assert!(
        e.to_string().contains("dataset snapshot 404 is gone"),
        "{e}"
    );
    let mut all = outputs(&f.runner).await;
    let StepOutput::Model(mut m) = all.remove(2) else {
        panic!()
    };
    m.artifact = "00".repeat(32);
    let e = Output::restore(&f.runner, StepOutput::Model(m))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("missing"), "{e:#}");
}

#[test]
fn a_step_is_stopped_only_when_its_run_was_asked_to_stop() {
    let cancelled = PluginFailure::Cancelled { plugin: "p".into() };
    let trap = PluginFailure::Trap {
        plugin: "p".into(),
        detail: "boom".into(),
    };
    // Nobody asked: a plugin's own "cancelled" is a failure, never an
    // interruption the daemon would resume for ever.
    let running = RunStop::new();
    assert_eq!(failed_as(&running, Some(&cancelled)), RunState::Failed);
    assert_eq!(failed_as(&running, None), RunState::Failed);
    // A person cancelled.
    let cancel = RunStop::new();
    cancel.abort(StopReason::Cancelled);
    assert_eq!(failed_as(&cancel, Some(&trap)), RunState::Cancelled);
    // The daemon drains: a step that gave up waiting is interrupted; one
    // that failed on its own failed.
    let drain = RunStop::new();
    drain.drain();
    assert_eq!(failed_as(&drain, Some(&cancelled)), RunState::Interrupted);
    assert_eq!(failed_as(&drain, Some(&trap)), RunState::Failed);
    // The daemon aborts what is still running.
    let all = RunStop::new();
    let run = all.child();
    all.abort(StopReason::Shutdown);
    assert_eq!(failed_as(&run, None), RunState::Interrupted);
}
