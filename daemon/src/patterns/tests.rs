//! Each pattern on small conversations whose answer is plain, and the
//! clustering on 100,000 messages.

use super::*;
use crate::core::conversation::{Feedback, Outcome, Turn};
use crate::core::evaluation::{Confusion, IntentScore};
use crate::core::example::Split;
use chrono::Duration;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn user(text: &str, intent: &str, confidence: f64) -> Turn {
    let mut t = Turn::new(Role::User, text);
    t.intent = Some(intent.into());
    t.confidence = Some(confidence);
    t
}

fn fallback(text: &str, days_ago: i64) -> Turn {
    let mut t = user(text, "oos", 0.2);
    t.fallback = true;
    t.at = Some(now() - Duration::days(days_ago));
    t
}

fn bot(text: &str) -> Turn {
    Turn::new(Role::Bot, text)
}

fn conv(id: impl Into<String>, turns: Vec<Turn>) -> Conversation {
    Conversation {
        id: id.into(),
        model: None,
        channel: None,
        outcome: None,
        turns,
        feedback: Vec::new(),
    }
}

fn corrected(mut t: Turn, to: &str) -> Turn {
    t.feedback.push(Feedback {
        rating: None,
        correction: Some(to.into()),
        comment: None,
        escalation: false,
        at: now(),
    });
    t
}

fn example(text: &str, intent: &str) -> Example {
    Example {
        text: text.into(),
        intent: intent.into(),
        entities: Vec::new(),
        split: Split::Train,
    }
}

fn find_in(conversations: &[Conversation], examples: &[Example]) -> Patterns {
    let input = Input {
        conversations,
        examples,
        evaluation: None,
        now: now(),
    };
    find(&input, &Settings::default())
}

fn report(per_intent: Vec<IntentScore>, confusions: Vec<Confusion>) -> Report {
    let mut r = crate::core::evaluation::score("test", &[], "oos", 5);
    r.per_intent = per_intent;
    r.confusions = confusions;
    r
}

const REFUNDS: [&str; 10] = [
    "I want a refund for my order",
    "refund my order please",
    "how do I get a refund for my order",
    "can you refund my order",
    "I need a refund on order 1234",
    "please refund my last order",
    "refund for my order",
    "my order refund",
    "requesting a refund for order 5567",
    "refund order now",
];

const STORES: [&str; 10] = [
    "where is the nearest store",
    "nearest store to me",
    "find the nearest store",
    "where's your nearest store",
    "is there a store nearest to me",
    "nearest store location",
    "what is the nearest store",
    "show me the nearest store",
    "nearest store please",
    "directions to the nearest store",
];

fn training() -> Vec<Example> {
    vec![
        example("refund my order", "refund"),
        example("I want my money back, refund it", "refund"),
        example("can I get a refund", "refund"),
        example("hello there", "greet"),
        example("good morning", "greet"),
        example("where is my package", "order_status"),
        example("track my parcel", "order_status"),
    ]
}

fn fallback_conversations() -> Vec<Conversation> {
    let mut out = Vec::new();
    for (i, text) in REFUNDS.iter().enumerate() {
        out.push(conv(
            format!("r{i}"),
            vec![
                fallback(text, 1 + i as i64 % 3),
                bot("Sorry, I didn't get that."),
            ],
        ));
    }
    for (i, text) in STORES.iter().enumerate() {
        out.push(conv(format!("s{i}"), vec![fallback(text, 10)]));
    }
    out.push(conv("noise", vec![fallback("purple elephants dancing", 2)]));
    out
}

#[test]
fn fallback_messages_form_one_cluster_per_topic() {
    let p = find_in(&fallback_conversations(), &training());
    assert_eq!(p.unplaced, 21);
    assert_eq!(p.fallback_clusters.len(), 2, "{:#?}", p.fallback_clusters);
    let refund = p
        .fallback_clusters
        .iter()
        .find(|c| c.top_terms.iter().any(|t| t == "refund"))
        .expect("a refund cluster");
    assert_eq!(refund.size, 10, "{:#?}", p.fallback_clusters);
    assert_eq!(refund.messages.len(), 10);
    assert_eq!(refund.conversations, 10);
    let nearest = refund.nearest_intent.as_ref().unwrap();
    assert_eq!(nearest.intent, "refund");
    assert!(!refund.new_intent, "{nearest:?}");
    let trend = refund.trend.as_ref().unwrap();
    assert_eq!((trend.recent, trend.earlier), (10, 0));
    assert_eq!(trend.direction, Direction::Rising);

    let store = p
        .fallback_clusters
        .iter()
        .find(|c| c.suggested_intent.contains("store"))
        .expect("a store cluster");
    assert_eq!(store.size, 10);
    assert!(store.new_intent);
    assert_eq!(store.trend.as_ref().unwrap().earlier, 10);
    assert_eq!(store.representatives.len(), 5);
    assert!(
        store
            .representatives
            .iter()
            .all(|r| STORES.contains(&r.as_str()))
    );

    let recs = recommend(&p, &Settings::default());
    let new = recs.iter().find(|r| r.action == Action::NewIntent).unwrap();
    assert_eq!(new.evidence.key, store.id);
    assert_eq!(new.items.len(), 10);
    assert_eq!(
        new.items[0].suggested_intent.as_deref(),
        Some(store.suggested_intent.as_str())
    );
    let more = recs
        .iter()
        .find(|r| r.action == Action::AddExamples && r.evidence.key == refund.id)
        .unwrap();
    assert_eq!(more.intents, ["refund"]);
}

#[test]
fn ids_do_not_depend_on_the_order_of_conversations() {
    let mut convs = fallback_conversations();
    let a = find_in(&convs, &training());
    convs.reverse();
    let b = find_in(&convs, &training());
    let ids = |p: &Patterns| {
        let mut v: Vec<String> = p.fallback_clusters.iter().map(|c| c.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&a), ids(&b));
    let rec_ids = |p: &Patterns| {
        let mut v: Vec<String> = recommend(p, &Settings::default())
            .into_iter()
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    };
    assert_eq!(rec_ids(&a), rec_ids(&b));
}

#[test]
fn without_training_every_cluster_is_a_new_intent() {
    let p = find_in(&fallback_conversations(), &[]);
    assert_eq!(p.fallback_clusters.len(), 2);
    assert!(
        p.fallback_clusters
            .iter()
            .all(|c| c.new_intent && c.nearest_intent.is_none())
    );
    assert!(p.drift.is_none());
}

fn ambiguous(text: &str) -> Turn {
    let mut t = user(text, "book_flight", 0.45);
    t.ranking = vec![
        Ranked {
            intent: "book_flight".into(),
            confidence: 0.45,
        },
        Ranked {
            intent: "book_hotel".into(),
            confidence: 0.42,
        },
    ];
    t
}

#[test]
fn low_margin_predictions_and_corrections_make_a_confusable_pair() {
    let mut convs: Vec<Conversation> = (0..5)
        .map(|i| conv(format!("c{i}"), vec![ambiguous("book me a trip to Paris")]))
        .collect();
    convs.push(conv(
        "fixed",
        vec![corrected(
            user("a room in Rome", "book_flight", 0.9),
            "book_hotel",
        )],
    ));
    let report = report(
        Vec::new(),
        vec![Confusion {
            truth: "book_hotel".into(),
            predicted: "book_flight".into(),
            count: 2,
        }],
    );
    let input = Input {
        conversations: &convs,
        examples: &[],
        evaluation: Some(&report),
        now: now(),
    };
    let p = find(&input, &Settings::default());
    assert_eq!(p.confusable_pairs.len(), 1);
    let pair = &p.confusable_pairs[0];
    assert_eq!(pair.intents, ["book_flight", "book_hotel"]);
    assert_eq!(
        (pair.low_margin, pair.corrections, pair.evaluation),
        (5, 1, 2)
    );
    assert_eq!(pair.score, 9.0);
    assert_eq!(pair.conversations, 6);
    assert_eq!(pair.messages[0].conversation, "fixed");
    let recs = recommend(&p, &Settings::default());
    let r = recs
        .iter()
        .find(|r| r.action == Action::MergeOrSplit)
        .unwrap();
    assert_eq!((r.impact, r.confidence), (6, 0.8));
}

#[test]
fn an_intent_busier_live_than_in_training_is_weak() {
    let mut examples: Vec<Example> = (0..18)
        .map(|i| example(&format!("hello {i}"), "greet"))
        .collect();
    examples.push(example("refund my order", "refund"));
    examples.push(example("money back", "refund"));
    let mut convs: Vec<Conversation> = (0..10)
        .map(|i| conv(format!("g{i}"), vec![user("hello", "greet", 0.99)]))
        .collect();
    for i in 0..8 {
        convs.push(conv(
            format!("r{i}"),
            vec![user("refund it", "refund", 0.5 + i as f64 / 100.0)],
        ));
    }
    convs.push(conv(
        "c",
        vec![corrected(user("give me my money", "greet", 0.6), "refund")],
    ));
    let p = find_in(&convs, &examples);
    assert_eq!(p.weak_intents.len(), 1, "{:#?}", p.weak_intents);
    let w = &p.weak_intents[0];
    assert_eq!(w.intent, "refund");
    assert_eq!((w.volume, w.predicted, w.corrected_to), (9, 8, 1));
    assert!(w.representation.unwrap() > 4.0);
    assert!(
        w.reasons[0].contains("training examples"),
        "{:?}",
        w.reasons
    );
    // Corrected first, then the least confident predictions.
    assert_eq!(w.messages[0].conversation, "c");
    assert_eq!(w.messages[1].conversation, "r0");
    let recs = recommend(&p, &Settings::default());
    let r = recs
        .iter()
        .find(|r| r.evidence.pattern == "weak_intent")
        .unwrap();
    assert_eq!(r.action, Action::AddExamples);
    assert_eq!(r.items[0].suggested_intent.as_deref(), Some("refund"));
}

#[test]
fn low_evaluation_recall_and_many_corrections_make_an_intent_weak() {
    let mut convs: Vec<Conversation> = (0..6)
        .map(|i| conv(format!("a{i}"), vec![user("cancel it", "cancel", 0.9)]))
        .collect();
    for c in convs.iter_mut().take(3) {
        let t = c.turns.pop().unwrap();
        c.turns.push(corrected(t, "refund"));
    }
    let cancel = IntentScore {
        intent: "cancel".into(),
        precision: 0.9,
        recall: 0.4,
        f1: 0.55,
        support: 10,
    };
    let report = report(vec![cancel], Vec::new());
    let input = Input {
        conversations: &convs,
        examples: &[],
        evaluation: Some(&report),
        now: now(),
    };
    let p = find(&input, &Settings::default());
    let w = p
        .weak_intents
        .iter()
        .find(|w| w.intent == "cancel")
        .unwrap();
    assert_eq!(w.recall, Some(0.4));
    assert_eq!(w.correction_rate, Some(0.5));
    assert_eq!(w.reasons.len(), 2, "{:?}", w.reasons);
}

#[test]
fn the_same_text_with_two_labels_is_a_conflict() {
    let examples = vec![
        example("Cancel my order", "cancel"),
        example("cancel my order!", "refund"),
        example("hello", "greet"),
    ];
    let convs = vec![conv(
        "x",
        vec![corrected(user("cancel my order", "cancel", 0.9), "refund")],
    )];
    let p = find_in(&convs, &examples);
    assert_eq!(p.label_conflicts.len(), 1);
    let c = &p.label_conflicts[0];
    assert_eq!(c.text, "cancel my order");
    let refund = c.labels.iter().find(|l| l.intent == "refund").unwrap();
    assert_eq!((refund.training, refund.corrections), (1, 1));
    assert_eq!(c.messages.len(), 1);
    let recs = recommend(&p, &Settings::default());
    assert!(
        recs.iter()
            .any(|r| r.action == Action::ReviewConflicts && r.impact == 1)
    );
}

#[test]
fn drift_is_zero_for_the_training_mix_and_major_for_another() {
    let examples = vec![
        example("hello", "greet"),
        example("refund my order", "refund"),
    ];
    let same: Vec<Conversation> = (0..10)
        .map(|i| {
            let (text, intent) = if i % 2 == 0 {
                ("hello", "greet")
            } else {
                ("refund my order", "refund")
            };
            conv(format!("c{i}"), vec![user(text, intent, 0.9)])
        })
        .collect();
    let d = find_in(&same, &examples).drift.unwrap();
    assert_eq!(d.psi, 0.0);
    assert_eq!(d.level, DriftLevel::Stable);
    assert_eq!((d.chi_squared, d.dof), (0.0, 1));
    assert_eq!(d.p_value, 1.0);
    assert_eq!((d.oov_rate, d.js_divergence), (0.0, 0.0));
    assert!(!d.drifted, "{}", d.reason);

    let other: Vec<Conversation> = (0..10)
        .map(|i| {
            conv(
                format!("c{i}"),
                vec![user("track parcel to Leeds", "greet", 0.9)],
            )
        })
        .collect();
    let d = find_in(&other, &examples).drift.unwrap();
    assert_eq!(d.level, DriftLevel::Major);
    assert!(d.drifted);
    assert_eq!(d.oov_rate, 1.0);
    assert!((d.js_divergence - 1.0).abs() < 1e-12);
    assert_eq!(d.shifts[0].intent, "refund");
    assert!(d.reason.contains("a lot"), "{}", d.reason);
}

#[test]
fn a_response_followed_by_rephrases_is_a_failure_point() {
    let mut convs = Vec::new();
    for i in 0..6 {
        let next = if i == 5 {
            user("let me talk to a human", "oos", 0.3)
        } else {
            user("please change my address", "oos", 0.3)
        };
        convs.push(conv(
            format!("f{i}"),
            vec![
                user("I want to change my address", "oos", 0.3),
                bot("Sorry, I can only help with orders."),
                next,
            ],
        ));
    }
    for i in 0..6 {
        let mut c = conv(
            format!("ok{i}"),
            vec![
                user("where is my order", "order_status", 0.9),
                bot(&format!("Your order {} ships today.", 100 + i)),
                user("thanks!", "thanks", 0.9),
                bot("You're welcome, goodbye!"),
            ],
        );
        c.outcome = Some(Outcome::Resolved);
        convs.push(c);
    }
    let p = find_in(&convs, &[]);
    assert_eq!(p.failure_points.len(), 1, "{:#?}", p.failure_points);
    let f = &p.failure_points[0];
    assert_eq!(f.key, "sorry, i can only help with orders.");
    assert_eq!(
        (f.occurrences, f.rephrased, f.escalated, f.left),
        (6, 5, 1, 0)
    );
    assert_eq!(f.failure_rate, 1.0);
    assert_eq!(f.examples.len(), 5);
    assert_eq!(f.messages[0].turn, 2);
    let recs = recommend(&p, &Settings::default());
    let r = recs
        .iter()
        .find(|r| r.action == Action::FixResponse)
        .unwrap();
    assert_eq!((r.impact, r.score), (6, 6.0));
}

#[test]
fn leaving_unresolved_after_a_response_is_a_failure() {
    let convs: Vec<Conversation> = (0..5)
        .map(|i| {
            conv(
                format!("l{i}"),
                vec![
                    user("how much is shipping", "shipping", 0.9),
                    bot("Shipping costs vary."),
                ],
            )
        })
        .collect();
    let p = find_in(&convs, &[]);
    assert_eq!(p.failure_points[0].left, 5);
}

#[test]
fn patterns_and_settings_read_back_from_json() {
    let p = find_in(&fallback_conversations(), &training());
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Patterns>(&json).unwrap(), p);
    let recs = recommend(&p, &Settings::default());
    let json = serde_json::to_string(&recs).unwrap();
    assert!(json.contains(r#""action":"new_intent""#));
    assert_eq!(
        serde_json::from_str::<Vec<Recommendation>>(&json).unwrap(),
        recs
    );
    assert_eq!(
        serde_json::from_str::<Settings>("{}").unwrap(),
        Settings::default()
    );
    assert!(serde_json::from_str::<Settings>(r#"{"min_clster": 2}"#).is_err());
}

/// 100,000 unplaced messages on 200 topics, clustered. Slow in a debug
/// build; `cargo test --release -- --ignored clustering_scales` prints the
/// time.
#[test]
#[ignore]
fn clustering_scales_to_100k_messages() {
    let mut seed = 42u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) % n) as usize
    };
    // Letters only: the words fold digits, so `topic12` would be `topic#`.
    let word = |prefix: &str, mut n: usize| {
        let mut w = prefix.to_owned();
        loop {
            w.push(char::from(b'a' + (n % 26) as u8));
            n /= 26;
            if n == 0 {
                return w;
            }
        }
    };
    let fillers = [
        "i need",
        "please",
        "can you",
        "how do i",
        "help with",
        "",
        "urgent",
    ];
    let mut convs = Vec::new();
    for i in 0..100_000 {
        let topic = next(200);
        let text = format!(
            "{} {} {} {} {} order {}",
            fillers[next(fillers.len() as u64)],
            word("x", topic),
            word("y", topic),
            if next(2) == 0 {
                word("z", topic)
            } else {
                String::new()
            },
            word("w", next(5000)),
            next(1000)
        );
        convs.push(conv(
            format!("c{i}"),
            vec![fallback(&text, next(20) as i64)],
        ));
    }
    let examples = training();
    let input = Input {
        conversations: &convs,
        examples: &examples,
        evaluation: None,
        now: now(),
    };
    let settings = Settings {
        max_patterns: 1000,
        ..Settings::default()
    };
    let started = std::time::Instant::now();
    let p = find(&input, &settings);
    let took = started.elapsed();
    let clustered: usize = p.fallback_clusters.iter().map(|c| c.size).sum();
    println!(
        "clustered {} messages into {} clusters ({} in clusters) in {:.2?}",
        p.unplaced,
        p.fallback_clusters.len(),
        clustered,
        took
    );
    assert_eq!(p.unplaced, 100_000);
    // Each topic is found as one large cluster, of its words alone; a few
    // messages gather around their shared rare noise word instead.
    let topics: Vec<&FallbackCluster> = p
        .fallback_clusters
        .iter()
        .filter(|c| c.size >= 300)
        .collect();
    assert_eq!(topics.len(), 200);
    for c in topics {
        let topic = |m: &MessageRef| {
            m.text
                .split(' ')
                .find(|w| w.starts_with('x'))
                .map(str::to_owned)
        };
        let first = topic(&c.messages[0]);
        let same = c.messages.iter().filter(|m| topic(m) == first).count();
        assert!(
            same as f64 >= 0.95 * c.messages.len() as f64,
            "{:?}",
            c.top_terms
        );
    }
}
