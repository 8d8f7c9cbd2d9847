//! The store on both backends: SQLite (the default) and PostgreSQL (the one
//! on this machine, `COACH_TEST_POSTGRES` to point elsewhere).

use coach::store::{NewModel, Store, StoredExample, state};
use sea_orm::{ConnectionTrait, Database};

fn rows(n: usize) -> Vec<StoredExample> {
    (0..n)
        .map(|i| StoredExample {
            text: format!("utterance {i} — ünïcode"),
            intent: format!("intent_{}", i % 3),
            entities: r#"[{"entity":"x","start":0,"end":9,"value":"utterance"}]"#.into(),
            split: if i % 5 == 0 {
                "validation".into()
            } else {
                "train".into()
            },
        })
        .collect()
}

fn new_model(run_id: i64, dv: i64, hash: &str) -> NewModel {
    NewModel {
        name: "demo".into(),
        run_id,
        trainer_plugin: "trainer-intent".into(),
        trainer_version: "0.1.0".into(),
        plugin_hash: "a".repeat(64),
        artifact_hash: "b".repeat(64),
        artifact_size: 10,
        dataset_version_id: dv,
        data_hash: hash.into(),
        config_hash: "c".repeat(64),
        metrics: serde_json::json!({"accuracy": 0.9}),
        intents: vec!["a".into(), "b".into()],
        base_model_id: None,
    }
}

async fn exercise(store: &Store) {
    // Snapshots are content-addressed: the same rows give the same version.
    let data = rows(1234);
    let (v1, h1) = store
        .save_dataset_version("demo/data", &data, serde_json::json!({"step": "data"}))
        .await
        .unwrap();
    let (v2, h2) = store
        .save_dataset_version("demo/data", &data, serde_json::json!({"step": "data"}))
        .await
        .unwrap();
    assert_eq!((v1, &h1), (v2, &h2));
    let mut changed = data.clone();
    changed[7].intent = "other".into();
    let (v3, h3) = store
        .save_dataset_version("demo/data", &changed, serde_json::json!({}))
        .await
        .unwrap();
    assert_ne!(v3, v1);
    assert_ne!(h3, h1);
    assert_eq!(store.load_examples(v1).await.unwrap(), data);

    // Runs, steps, metrics.
    let run = store
        .start_run("demo", "wf.toml", &"f".repeat(64))
        .await
        .unwrap();
    let step = store
        .start_step(run, "train", "trainer-intent", 1)
        .await
        .unwrap();
    store
        .add_metrics(
            run,
            "train",
            &[
                ("loss".into(), 0.5, 1),
                ("loss".into(), 0.25, 2),
                ("nan".into(), f64::NAN, 3),
            ],
        )
        .await
        .unwrap();
    store
        .finish_step(
            step,
            state::SUCCEEDED,
            None,
            Some(serde_json::json!({"ok": true})),
        )
        .await
        .unwrap();
    store.finish_run(run, state::SUCCEEDED, None).await.unwrap();
    let (r, steps, metrics) = store.run(run).await.unwrap().unwrap();
    assert_eq!(r.state, "succeeded");
    assert!(r.finished_at.is_some());
    assert_eq!(steps.len(), 1);
    assert_eq!(
        metrics
            .iter()
            .map(|m| (m.step, m.value))
            .collect::<Vec<_>>(),
        [(1, 0.5), (2, 0.25)]
    );

    // Models are numbered per name; selectors find them.
    let m1 = store.register_model(new_model(run, v1, &h1)).await.unwrap();
    let m2 = store.register_model(new_model(run, v3, &h3)).await.unwrap();
    assert_eq!((m1.version, m2.version), (1, 2));
    assert_eq!(store.find_model("latest").await.unwrap().unwrap().id, m2.id);
    assert_eq!(store.find_model("demo").await.unwrap().unwrap().id, m2.id);
    assert_eq!(store.find_model("demo:1").await.unwrap().unwrap().id, m1.id);
    assert_eq!(
        store
            .find_model(&m1.id.to_string())
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert!(store.find_model("nope").await.unwrap().is_none());
    exercise_queue(store).await;
    exercise_traffic(store).await;
}

/// Conversations, feedback and the traffic counts trigger conditions read.
async fn exercise_traffic(store: &Store) {
    use coach::store::conversations::{NewConversation, NewFeedback, NewMessage};
    let msg = |role, intent: Option<&str>, fallback| NewMessage {
        role,
        text: "hello".into(),
        intent: intent.map(str::to_owned),
        confidence: Some(0.5),
        fallback,
        model_version: Some(1),
        at: chrono::Utc::now(),
    };
    let conv = |id: &str, messages| NewConversation {
        model: "bot".into(),
        id: id.into(),
        channel: None,
        messages,
    };
    // 600 messages in one conversation: stored in several statements.
    let long: Vec<NewMessage> = (0..600).map(|i| msg("user", None, i % 3 == 0)).collect();
    let n = store
        .log_conversations(&[
            conv(
                "a",
                vec![msg("user", Some("hi"), false), msg("bot", None, false)],
            ),
            conv("b", long),
        ])
        .await
        .unwrap();
    assert_eq!(n, 602);
    let before_more = chrono::Utc::now();
    store
        .log_conversations(&[conv("a", vec![msg("user", Some("bye"), true)])])
        .await
        .unwrap();
    let fb = |conversation: Option<&str>, message, rating, correction: Option<&str>| NewFeedback {
        model: "bot".into(),
        conversation: conversation.map(str::to_owned),
        message,
        rating,
        correction: correction.map(str::to_owned),
        comment: None,
        at: chrono::Utc::now(),
    };
    store
        .record_feedback(&[
            fb(Some("a"), Some(2), Some(-1), Some("goodbye")),
            fb(None, None, Some(1), None),
        ])
        .await
        .unwrap();
    let err = store
        .record_feedback(&[fb(Some("a"), Some(3), Some(1), None)])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "feedback[0]: conversation `a` has no message 3"
    );
    let t = store.traffic_since("bot", None).await.unwrap();
    assert_eq!(
        (t.conversations, t.messages, t.user_messages, t.fallbacks),
        (2, 603, 602, 201)
    );
    assert_eq!(
        (t.feedback, t.positive, t.negative, t.corrections),
        (2, 1, 1, 1)
    );
    assert!((t.fallback_rate - 201.0 / 602.0).abs() < 1e-9);
    let recent = store.traffic_since("bot", Some(before_more)).await.unwrap();
    assert_eq!(
        (
            recent.conversations,
            recent.messages,
            recent.fallbacks,
            recent.feedback
        ),
        (0, 1, 1, 2),
        "counted by when received; appending does not make a conversation new"
    );
    let other = store.traffic_since("other", None).await.unwrap();
    assert_eq!(other, Default::default());
}

/// The daemon's durable run queue and its tokens.
async fn exercise_queue(store: &Store) {
    use coach::store::tokens::{Role, hash_token};
    // Two fires of one workflow version: the version is kept once, each
    // run is queued with its fire, in one transaction each.
    let version = ("wf", "wf.toml", "abc", "version = 1");
    let no_scripts = std::collections::BTreeMap::new();
    let fire = |trigger: &'static str| {
        store.enqueue_fired(version, &no_scripts, trigger, chrono::Utc::now(), None)
    };
    let a = fire("manual").await.unwrap();
    let b = fire("cron").await.unwrap();
    let kept = store.workflow_version("abc").await.unwrap().unwrap();
    assert_eq!(kept.content, "version = 1");
    let queued: Vec<i64> = store
        .queued_runs()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(queued, [a.id, b.id], "oldest first");
    assert!(store.claim_run(a.id, "daemon:one").await.unwrap());
    assert!(
        !store.claim_run(a.id, "daemon:two").await.unwrap(),
        "claimed once"
    );
    store
        .start_step(a.id, "train", "trainer-intent", 1)
        .await
        .unwrap();
    assert!(
        store
            .recover_interrupted("daemon:two")
            .await
            .unwrap()
            .is_empty(),
        "a daemon resumes only its own runs"
    );
    let recovered = store.recover_interrupted("daemon:one").await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].steps, ["train"]);
    assert_eq!(store.steps_of(a.id).await.unwrap()[0].state, "interrupted");
    let (run, _, _) = store.run(a.id).await.unwrap().unwrap();
    assert_eq!((run.state.as_str(), run.resumes), ("queued", 1));
    assert!(store.cancel_queued(b.id, "not needed").await.unwrap());
    assert!(!store.cancel_queued(b.id, "not needed").await.unwrap());
    assert_eq!(store.active_runs_of("wf").await.unwrap(), 1);
    let counts = store.run_counts().await.unwrap();
    assert!(counts.contains(&("cancelled".to_owned(), 1)), "{counts:?}");
    assert!(counts.contains(&("queued".to_owned(), 1)), "{counts:?}");

    let (t, secret) = store.create_token("ops", Role::Operator).await.unwrap();
    let found = store.token_by_hash(&hash_token(&secret)).await.unwrap();
    assert_eq!(found.map(|f| f.id), Some(t.id));
    assert!(store.revoke_token(t.id).await.unwrap());
    assert!(
        store
            .token_by_hash(&hash_token(&secret))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sub/coach.db").display()
    );
    let store = Store::connect(&url).await.unwrap();
    exercise(&store).await;
    // Reopening migrates nothing and keeps everything.
    drop(store);
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.models(10).await.unwrap().len(), 2);
    let mode = store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mode.try_get_by_index::<String>(0).unwrap().to_lowercase(),
        "wal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_connects_in_parallel_migrate_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("coach.db").display()
    );
    let tasks: Vec<_> = (0..6)
        .map(|_| tokio::spawn(Store::connect_owned(url.clone())))
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn store_on_postgres() {
    let admin_url = std::env::var("COACH_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = Database::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required for this test: {e}"));
    let name = format!(
        "coach_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let result = tokio::spawn({
        let url = url.clone();
        async move {
            // Several first connects at once migrate once.
            let racers: Vec<_> = (0..4)
                .map(|_| tokio::spawn(Store::connect_owned(url.clone())))
                .collect();
            for r in racers {
                r.await.unwrap().unwrap();
            }
            let store = Store::connect(&url).await.unwrap();
            exercise(&store).await;
            drop(store);
            // Migrations are idempotent.
            let store = Store::connect(&url).await.unwrap();
            assert_eq!(store.models(10).await.unwrap().len(), 2);
            store.connection().clone().close().await.unwrap();
        }
    })
    .await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    result.unwrap();
}
