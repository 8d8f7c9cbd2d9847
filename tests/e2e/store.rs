//! The store on both backends: SQLite (the default) and PostgreSQL (the one
//! on this machine, `COACH_TEST_POSTGRES` to point elsewhere).

use coach::core::example::{EntitySpan, Example, Split};
use coach::core::ids::{ModelRef, RunId};
use coach::core::output::{StepOutput, Verdict};
use coach::core::state::{RunState, StepState, TriggerKind};
use coach::store::queue::{Submission, Submitted};
use coach::store::{NewModel, Store};
use sea_orm::{ConnectionTrait, Database};
use std::collections::BTreeMap;

fn rows(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            text: format!("utterance {i} — ünïcode"),
            intent: format!("intent_{}", i % 3),
            entities: vec![EntitySpan {
                entity: "x".into(),
                start: 0,
                end: 9,
                value: "utterance".into(),
            }],
            split: if i % 5 == 0 {
                Split::Validation
            } else {
                Split::Train
            },
        })
        .collect()
}

fn new_model(run_id: RunId, dv: i64, hash: &str) -> NewModel {
    NewModel {
        name: "demo".into(),
        run_id,
        trainer_plugin: "trainer-intent".into(),
        trainer_version: "0.1.0".into(),
        plugin_hash: "a".repeat(64),
        artifact_hash: "b".repeat(64),
        artifact_size: 10,
        dataset_version_id: Some(dv),
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

    // Ten first snapshots of a new dataset at once (ten first runs of a new
    // workflow): one dataset, one version, every caller told its id.
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let (store, data) = (store.clone(), rows(300));
            tokio::spawn(async move {
                store
                    .save_dataset_version("race/data", &data, serde_json::json!({}))
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for r in racers {
        ids.insert(r.await.unwrap().unwrap().0);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        store
            .load_examples(*ids.first().unwrap())
            .await
            .unwrap()
            .len(),
        300
    );

    // Runs, steps, metrics.
    let Submitted::Run(run) = store
        .submit(submission(
            "demo",
            TriggerKind::Cli,
            false,
            Some("cli:test"),
        ))
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(run.state, RunState::Running, "claimed by its submitter");
    let run = run.run_id();
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
            StepState::Succeeded,
            None,
            Some(&StepOutput::Verdict(Verdict {
                pass: true,
                reason: None,
            })),
        )
        .await
        .unwrap();
    store
        .finish_run(run, RunState::Succeeded, None)
        .await
        .unwrap();
    let (r, steps, metrics) = store.run(run).await.unwrap().unwrap();
    assert_eq!(r.state, RunState::Succeeded);
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
    let find = |s: &str| {
        let r: ModelRef = s.parse().unwrap();
        async move { store.find_model(&r).await.unwrap() }
    };
    assert_eq!(find("latest").await.unwrap().id, m2.id);
    assert_eq!(find("demo").await.unwrap().id, m2.id);
    assert_eq!(find("demo:1").await.unwrap().id, m1.id);
    assert_eq!(find(&m1.id.to_string()).await.unwrap().version, 1);
    assert!(find("nope").await.is_none());
    exercise_queue(store).await;
    exercise_traffic(store).await;
    exercise_text_search(store).await;

    // Ten registrations of a new name at once: versions 1 to 10, no
    // duplicate-key failure.
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let mut m = new_model(run, v1, &h1);
            m.name = "raced".into();
            tokio::spawn(async move { store.register_model(m).await })
        })
        .collect();
    let mut versions = Vec::new();
    for r in racers {
        versions.push(r.await.unwrap().unwrap().version);
    }
    versions.sort();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
}

/// The text search: what the index holds and what was logged since it
/// was last filled are found alike, once each.
async fn exercise_text_search(store: &Store) {
    use coach::store::conversation_reads::ConversationFilter;
    use coach::store::conversations::{NewConversation, NewMessage};
    let log = |id: &str, text: &str| NewConversation {
        model: "search-bot".into(),
        id: id.into(),
        channel: None,
        messages: vec![NewMessage {
            role: "user",
            text: text.into(),
            intent: None,
            confidence: None,
            fallback: false,
            model_version: None,
            escalation: false,
            at: chrono::Utc::now(),
            ranking: Vec::new(),
            entities: Vec::new(),
        }],
        outcome: None,
        assignment: None,
    };
    let search = |q: &str| {
        let filter = ConversationFilter {
            model: Some("search-bot".into()),
            text: Some(q.into()),
            limit: 50,
            ..ConversationFilter::default()
        };
        async move {
            store
                .list_conversations(&filter)
                .await
                .unwrap()
                .conversations
                .into_iter()
                .map(|c| c.external_id)
                .collect::<Vec<_>>()
        }
    };
    store
        .log_conversations(&[log("s1", "Un GÂTEAU pour l'ÉTÉ, \"100% sûr\"")])
        .await
        .unwrap();
    while store.catch_up_text_index().await.unwrap() {}
    for (q, want) in [
        ("gâteau", &["s1"][..]),
        ("été,", &["s1"]),
        ("\"100% s", &["s1"]),
        ("100_", &[]),
        ("gâteau\" OR \"x", &[]),
        ("UN", &["s1"]),
    ] {
        assert_eq!(search(q).await, want, "{q}");
    }
    // Logged after the index was filled: found by scanning, then from the
    // index, never twice. Scanning finds the text as typed and in lower
    // case, whatever the letters.
    store
        .log_conversations(&[log("s2", "un gâteau de plus"), log("s3", "ÉCOLE")])
        .await
        .unwrap();
    assert_eq!(search("GÂTEAU").await, ["s2", "s1"]);
    assert_eq!(search("ÉCOLE").await, ["s3"]);
    while store.catch_up_text_index().await.unwrap() {}
    assert_eq!(search("GÂTEAU").await, ["s2", "s1"]);
    assert_eq!(search("école").await, ["s3"]);
    assert!(!store.catch_up_text_index().await.unwrap());
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
        escalation: false,
        at: chrono::Utc::now(),
        ranking: Vec::new(),
        entities: Vec::new(),
    };
    let conv = |id: &str, messages| NewConversation {
        model: "bot".into(),
        id: id.into(),
        channel: None,
        messages,
        outcome: None,
        assignment: None,
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
        escalation: false,
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

    // What whole reads are cut by: the bytes of turns' text and intents and
    // of feedback's corrections and comments ("ä" is two), and a fixed share
    // a turn (256) and a feedback item (128): "a" has the intents "hi" and
    // "bye", the correction "goodbye" and the comment "thänks!".
    store
        .record_feedback(&[NewFeedback {
            comment: Some("thänks!".into()),
            ..fb(Some("a"), None, None, None)
        }])
        .await
        .unwrap();
    let filter = coach::store::conversation_reads::ConversationFilter {
        model: Some("bot".into()),
        limit: 10,
        ..Default::default()
    };
    let ids = store.conversation_ids(&filter).await.unwrap();
    let sizes = store.conversation_bytes(&ids).await.unwrap();
    assert_eq!(
        ids.iter().map(|i| sizes[i]).collect::<Vec<_>>(),
        [
            600 * (256 + 5),
            3 * (256 + 5) + 2 + 3 + (128 + 7) + (128 + 8)
        ]
    );
    assert_eq!(
        store
            .whole_reads(&ids, 1, u64::MAX, u64::MAX)
            .await
            .unwrap()
            .0,
        [[ids[0]], [ids[1]]]
    );
    assert_eq!(
        store
            .whole_reads(&ids, 10, u64::MAX, u64::MAX)
            .await
            .unwrap()
            .0,
        [ids]
    );

    // Experiment units: the running totals logging keeps equal the ones
    // computed from every conversation, through appends, a conversation
    // assigned late, outcomes, feedback and several conversations a unit.
    use coach::store::conversations::{Assignment, Outcome};
    let assigned = |id: &str, arm: &str, unit: &str, messages, outcome| NewConversation {
        model: "exp".into(),
        id: id.into(),
        channel: None,
        messages,
        outcome,
        assignment: Some(Assignment {
            experiment: 7,
            arm: arm.into(),
            unit: unit.into(),
        }),
    };
    let user = |fallback| msg("user", Some("hi"), fallback);
    store
        .log_conversations(&[
            assigned("e1", "control", "u1", vec![user(true), user(false)], None),
            assigned(
                "e2",
                "control",
                "u1",
                vec![user(false)],
                Some(Outcome::Resolved),
            ),
            assigned("e3", "v2", "u2", vec![user(false)], None),
        ])
        .await
        .unwrap();
    // Logged before it was in the experiment, then assigned.
    let mut late = conv("e4", vec![user(true)]);
    late.model = "exp".into();
    store.log_conversations(&[late]).await.unwrap();
    store
        .log_conversations(&[
            assigned(
                "e4",
                "v2",
                "u3",
                vec![user(false)],
                Some(Outcome::Escalated),
            ),
            assigned("e3", "v2", "u2", vec![], Some(Outcome::Resolved)),
            assigned(
                "e1",
                "control",
                "u1",
                vec![user(true)],
                Some(Outcome::Abandoned),
            ),
        ])
        .await
        .unwrap();
    let rate = |c: &str, rating| NewFeedback {
        model: "exp".into(),
        ..fb(Some(c), None, Some(rating), None)
    };
    store
        .record_feedback(&[rate("e1", -1), rate("e3", 1), rate("e4", -1)])
        .await
        .unwrap();
    let running = store.experiment_totals(7).await.unwrap();
    let scanned = store.experiment_totals_scan(7).await.unwrap();
    assert_eq!(running, scanned);
    assert_eq!(
        running
            .iter()
            .map(|(a, t)| (a.as_str(), t.units))
            .collect::<Vec<_>>(),
        [("control", 1), ("v2", 2)]
    );
    // u1: two conversations, four user messages, two fallbacks, one resolved.
    let control = &running[0].1;
    assert_eq!(control.sums[..3], [2.0, 4.0, 2.0]);
    assert_eq!(control.sums[8], 1.0);
    store.rebuild_experiment_totals(7).await.unwrap();
    assert_eq!(store.experiment_totals(7).await.unwrap(), scanned);
}

const HASH: &str = "abcdef";

fn submission(
    workflow: &'static str,
    trigger: TriggerKind,
    exclusive: bool,
    claimed_by: Option<&'static str>,
) -> Submission<'static> {
    static NO_SCRIPTS: BTreeMap<std::path::PathBuf, String> = BTreeMap::new();
    Submission {
        workflow,
        file: "wf.toml",
        hash: HASH,
        text: "version = 1",
        scripts: &NO_SCRIPTS,
        trigger,
        scheduled_for: chrono::Utc::now(),
        detail: None,
        exclusive,
        claimed_by,
    }
}

/// 50 submissions of a `forbid` workflow at once: exactly one run, and 49
/// fires recorded as skipped.
async fn exercise_exclusive(store: &Store) {
    let racers: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let trigger = if i % 2 == 0 {
                TriggerKind::Manual
            } else {
                TriggerKind::Cron
            };
            tokio::spawn(async move {
                store
                    .submit(submission("only-one", trigger, true, None))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut runs = 0;
    for r in racers {
        if let Submitted::Run(_) = r.await.unwrap() {
            runs += 1;
        }
    }
    assert_eq!(runs, 1, "exactly one of 50 racing submissions runs");
    assert_eq!(store.active_runs_of("only-one").await.unwrap(), 1);
    let fires = store.fires_of("only-one", 100).await.unwrap();
    assert_eq!(fires.len(), 50);
    assert_eq!(
        fires
            .iter()
            .filter(|f| f.outcome == coach::core::state::FireOutcome::Skipped)
            .count(),
        49
    );
}

/// The daemon's durable run queue and its tokens.
async fn exercise_queue(store: &Store) {
    use coach::store::tokens::{Revoked, Role, hash_token};
    // Two fires of one workflow version: the version is kept once, each
    // run is queued with its fire, in one transaction each.
    let fire = |trigger| async move {
        match store
            .submit(submission("wf", trigger, false, None))
            .await
            .unwrap()
        {
            Submitted::Run(r) => r,
            Submitted::Refused { .. } => panic!("refused"),
        }
    };
    let a = fire(TriggerKind::Manual).await;
    let b = fire(TriggerKind::Cron).await;
    let kept = store.workflow_version(HASH).await.unwrap().unwrap();
    assert_eq!(kept.content, "version = 1");
    let queued: Vec<i64> = store
        .queued_runs()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(queued, [a.id, b.id], "oldest first");
    let (a, b) = (a.run_id(), b.run_id());
    assert!(store.claim_run(a, "daemon:one").await.unwrap());
    assert!(
        !store.claim_run(a, "daemon:two").await.unwrap(),
        "claimed once"
    );
    store
        .start_step(a, "train", "trainer-intent", 1)
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
    assert_eq!(
        store.steps_of(a).await.unwrap()[0].state,
        StepState::Interrupted
    );
    let (run, _, _) = store.run(a).await.unwrap().unwrap();
    assert_eq!((run.state, run.resumes), (RunState::Queued, 1));
    // A run that keeps taking its daemon down is failed, not resumed for
    // ever.
    for resumes in 2..=coach::store::queue::MAX_RESUMES + 1 {
        assert!(store.claim_run(a, "daemon:one").await.unwrap());
        store.recover_interrupted("daemon:one").await.unwrap();
        let (run, _, _) = store.run(a).await.unwrap().unwrap();
        if resumes <= coach::store::queue::MAX_RESUMES {
            assert_eq!((run.state, run.resumes), (RunState::Queued, resumes));
        } else {
            assert_eq!(run.state, RunState::Failed);
            assert!(
                run.error.unwrap().contains("it is not resumed again"),
                "the reason is kept"
            );
        }
    }
    assert!(store.cancel_queued(b, "not needed").await.unwrap());
    assert!(!store.cancel_queued(b, "not needed").await.unwrap());
    assert_eq!(store.active_runs_of("wf").await.unwrap(), 0);
    let counts = store.run_counts().await.unwrap();
    assert!(counts.contains(&(RunState::Cancelled, 1)), "{counts:?}");
    assert!(counts.contains(&(RunState::Failed, 1)), "{counts:?}");

    // A process that claimed a run and died: the run ends interrupted,
    // and only for the executor that holds it.
    let Submitted::Run(c) = store
        .submit(submission(
            "wf2",
            TriggerKind::Cli,
            false,
            Some("cli:host:1:2"),
        ))
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    store
        .start_step(c.run_id(), "data", "source-files", 1)
        .await
        .unwrap();
    assert_eq!(store.running_runs_of("cli:host:").await.unwrap().len(), 1);
    assert!(
        store
            .interrupt_run(c.run_id(), "cli:other:1:2", "gone")
            .await
            .unwrap()
            .is_none()
    );
    let ended = store
        .interrupt_run(c.run_id(), "cli:host:1:2", "gone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.steps, ["data"]);
    let (run, steps, _) = store.run(c.run_id()).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Interrupted);
    assert_eq!(steps[0].state, StepState::Interrupted);
    assert!(store.running_runs_of("cli:host:").await.unwrap().is_empty());

    exercise_exclusive(store).await;

    let (t, secret) = store.create_token("ops", Role::Operator).await.unwrap();
    let found = store.token_by_hash(&hash_token(&secret)).await.unwrap();
    assert_eq!(found.map(|f| f.id), Some(t.id));
    assert_eq!(store.revoke_token(t.id).await.unwrap(), Revoked::Done);
    assert_eq!(
        store.revoke_token(t.id).await.unwrap(),
        Revoked::NoSuchToken
    );
    assert!(
        store
            .token_by_hash(&hash_token(&secret))
            .await
            .unwrap()
            .is_none()
    );
    // The last live admin token cannot be revoked: nobody could make
    // another one through the API.
    let (a, _) = store.create_token("root", Role::Admin).await.unwrap();
    let (b, _) = store.create_token("root2", Role::Admin).await.unwrap();
    let (first, second) = tokio::join!(store.revoke_token(a.id), store.revoke_token(b.id));
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|r| *r as u8);
    assert_eq!(outcomes, [Revoked::Done, Revoked::LastAdmin]);
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
    assert_eq!(store.models_named("demo").await.unwrap().len(), 2);
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
            assert_eq!(store.models_named("demo").await.unwrap().len(), 2);
            store.connection().clone().close().await.unwrap();
        }
    })
    .await;
    // A database of the version before foreign keys, upgraded.
    let old = format!("{name}_old");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {old}"))
        .await
        .unwrap();
    let upgraded = tokio::spawn({
        let url = format!("{base}/{old}");
        async move { upgrade_to_foreign_keys(&url).await }
    })
    .await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    result.unwrap();
    upgraded.unwrap();
}

/// A store written before foreign keys existed (a process model saved with
/// dataset version 0) upgrades keeping every row, and then refuses a row
/// that points at nothing.
async fn upgrade_to_foreign_keys(url: &str) {
    use coach::store::migration::Migrator;
    use sea_orm_migration::MigratorTrait;
    let old = Database::connect(url).await.unwrap();
    Migrator::up(&old, Some(6)).await.unwrap();
    for sql in [
        "INSERT INTO datasets (id, name, created_at) VALUES (1, 'd', '2026-01-01T00:00:00Z')",
        "INSERT INTO dataset_versions (id, dataset_id, content_hash, examples, intents, origin, created_at) VALUES (1, 1, 'h', 1, 1, '{}', '2026-01-01T00:00:00Z')",
        "INSERT INTO examples (dataset_version_id, position, text, intent, entities, split) VALUES (1, 0, 'hi', 'greet', '[]', 'train')",
        "INSERT INTO training_runs (id, workflow, workflow_file, workflow_hash, state, started_at, trigger, executor, resumes) VALUES (1, 'w', 'w.toml', 'x', 'succeeded', '2026-01-01T00:00:00Z', 'cli', 'cli', 0)",
        "INSERT INTO run_steps (run_id, step_id, action, attempt, state, started_at) VALUES (1, 'train', 'process', 1, 'succeeded', '2026-01-01T00:00:00Z')",
        "INSERT INTO models (id, name, version, run_id, trainer_plugin, trainer_version, plugin_hash, artifact_hash, artifact_size, dataset_version_id, data_hash, config_hash, metrics, intents, created_at) VALUES (1, 'm', 1, 1, 'process', 'train.py', 'p', 'a', 1, 0, '', 'c', '{}', '[]', '2026-01-01T00:00:00Z')",
        "INSERT INTO models (id, name, version, run_id, trainer_plugin, trainer_version, plugin_hash, artifact_hash, artifact_size, dataset_version_id, data_hash, config_hash, metrics, intents, created_at, base_model_id) VALUES (2, 'm', 2, 1, 'trainer-intent', '0.1.0', 'p', 'b', 1, 1, 'h', 'c', '{}', '[]', '2026-01-02T00:00:00Z', 1)",
        // A fire whose run is gone: the reference becomes NULL.
        "INSERT INTO trigger_fires (workflow, kind, scheduled_for, fired_at, outcome, run_id) VALUES ('w', 'cron', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'queued', 999)",
    ] {
        old.execute_unprepared(sql).await.unwrap();
    }
    old.close().await.unwrap();
    let store = Store::connect(url).await.unwrap();
    let models = store.models(10).await.unwrap();
    let dv: Vec<(i64, Option<i64>, Option<i64>)> = models
        .iter()
        .map(|m| (m.id, m.dataset_version_id, m.base_model_id))
        .collect();
    assert_eq!(dv, [(2, Some(1), Some(1)), (1, None, None)]);
    assert_eq!(store.steps_of(RunId(1)).await.unwrap().len(), 1);
    let fires = store.fires_of("w", 10).await.unwrap();
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].run_id, None, "a reference to nothing became NULL");
    assert_eq!(store.load_examples(1).await.unwrap().len(), 1);
    let orphan = store
        .connection()
        .execute_unprepared(
            "INSERT INTO run_steps (run_id, step_id, action, attempt, state, started_at) VALUES (999, 's', 'a', 1, 'running', '2026-01-01T00:00:00Z')",
        )
        .await;
    assert!(orphan.is_err(), "a step of no run is refused");
    // Indexes came back with their tables.
    assert_eq!(store.model_of_run(RunId(1)).await.unwrap().unwrap().id, 1);
}

#[tokio::test]
async fn an_old_store_upgrades_to_foreign_keys_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    upgrade_to_foreign_keys(&url).await;
}

/// A row that must name a parent and names none stops the upgrade, says
/// where and how to see it, and changes nothing.
#[tokio::test]
async fn an_orphan_row_stops_the_foreign_key_upgrade_and_says_which() {
    use coach::store::migration::Migrator;
    use sea_orm_migration::MigratorTrait;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let old = Database::connect(&url).await.unwrap();
    Migrator::up(&old, Some(6)).await.unwrap();
    old.execute_unprepared(
        "INSERT INTO run_steps (run_id, step_id, action, attempt, state, started_at) VALUES (42, 'train', 'x', 1, 'succeeded', '2026-01-01T00:00:00Z')",
    )
    .await
    .unwrap();
    old.close().await.unwrap();
    let e = format!("{:#}", Store::connect(&url).await.unwrap_err());
    assert!(
        e.contains("1 row(s) of `run_steps`") && e.contains("SELECT * FROM \"run_steps\""),
        "{e}"
    );
    let old = Database::connect(&url).await.unwrap();
    let pending = Migrator::get_pending_migrations(&old).await.unwrap();
    assert_eq!(
        pending.len(),
        Migrator::migrations().len() - 6,
        "the upgrade did not happen"
    );
    let kept = old
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT COUNT(*) FROM run_steps",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(kept, 1, "nothing was deleted");
}
