//! Experiments and canaries through the real daemon, a real plugin and a
//! real store, driven by a traffic simulator: synthetic users ask the
//! predict route and report how their conversation went, with outcomes
//! that depend on the arm that answered them. A truly better treatment is
//! promoted; one that breaches a guardrail is rolled back; an A/A
//! experiment promotes nothing; an injected imbalance is flagged and
//! decides nothing; kill -9 keeps every assignment and every count; a
//! canary walks its steps (and resumes at its step after kill -9) or rolls
//! back at a breach.

use crate::common::{Home, Postgres};
use crate::daemon::{Daemon, call, daemon_home, post_json, token};
use crate::deployments::{history, two_versions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the test daemons look at their experiments.
const LOOK: &str = "experiment_interval = \"200ms\"\n";

use coach::experiment::draws::SplitMix as Draws;

/// What a simulated user's visit does, by the version that answered.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Chance the conversation ends resolved, for v1 and v2.
    resolved: [f64; 2],
    /// Chance the user rates the answer -1 (else +1), for v1 and v2.
    negative: [f64; 2],
    /// Chance a v2 conversation is never logged (a broken integration:
    /// what a sample-ratio check must catch).
    v2_lost: f64,
}

const NEUTRAL: Behaviour = Behaviour {
    resolved: [0.4, 0.4],
    negative: [0.2, 0.2],
    v2_lost: 0.0,
};

/// Drives the daemon's predict, conversation and feedback routes.
struct Simulator {
    url: String,
    token: String,
    model: String,
}

impl Simulator {
    fn new(d: &Daemon, token: &str) -> Simulator {
        Simulator {
            url: d.url.clone(),
            token: token.to_owned(),
            model: "support".into(),
        }
    }

    fn predict(&self, body: Value) -> Value {
        let (s, v) = post_json(
            &format!("{}/api/v1/models/{}/predict", self.url, self.model),
            &self.token,
            &body,
        );
        assert_eq!(s, 200, "{v}");
        v
    }

    /// User `user` has conversation `conv`: one question, then the
    /// outcome the bot reports and a rating. Returns the version that
    /// answered and whether the conversation was logged.
    fn visit(&self, user: &str, conv: &str, b: Behaviour, draws: &mut Draws) -> (i64, bool) {
        // The platform first asks without naming the conversation (a
        // greeting it does not log), then for real.
        let first = self.predict(json!({"text": "hello there", "user_id": user}));
        let version = first["version"].as_i64().unwrap();
        let i = usize::from(version == 2);
        if version == 2 && draws.next() < b.v2_lost {
            return (version, false);
        }
        let v = self.predict(json!({
            "text": "can you find us a photographer",
            "user_id": user,
            "conversation_id": conv,
        }));
        if !v["experiment"].is_null() {
            // (Unless the experiment ended between the two questions.)
            assert_eq!(v["version"], version, "sticky within a user: {v}");
        }
        let outcome = if draws.next() < b.resolved[i] {
            "resolved"
        } else {
            "abandoned"
        };
        let (s, r) = post_json(
            &format!("{}/api/v1/conversations", self.url),
            &self.token,
            &json!({"conversations": [{"model": self.model, "id": conv, "outcome": outcome}]}),
        );
        assert_eq!(s, 201, "{r}");
        let rating = if draws.next() < b.negative[i] { -1 } else { 1 };
        let (s, r) = post_json(
            &format!("{}/api/v1/feedback", self.url),
            &self.token,
            &json!({"feedback": [{"model": self.model, "conversation": conv, "rating": rating}]}),
        );
        assert_eq!(s, 201, "{r}");
        (version, true)
    }

    /// `users` users (named from `first`), four at a time. Returns each
    /// user's version and how many conversations were logged per version.
    fn run(
        &self,
        first: usize,
        users: usize,
        b: Behaviour,
        seed: u64,
    ) -> (BTreeMap<String, i64>, BTreeMap<i64, u64>) {
        let per = users.div_ceil(4);
        let chunks: Vec<Vec<(String, i64, bool)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    scope.spawn(move || {
                        let mut draws = Draws(seed ^ ((t as u64 + 1) * 0x1234_5678));
                        let mut out = Vec::new();
                        for u in (first + t * per)..(first + ((t + 1) * per).min(users)) {
                            let user = format!("user-{u}");
                            let (version, logged) =
                                self.visit(&user, &format!("conv-{u}"), b, &mut draws);
                            out.push((user, version, logged));
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut versions = BTreeMap::new();
        let mut logged = BTreeMap::new();
        for (user, version, l) in chunks.into_iter().flatten() {
            versions.insert(user, version);
            *logged.entry(version).or_insert(0) += u64::from(l);
        }
        (versions, logged)
    }
}

/// A daemon looking at experiments every 200 ms, serving `support` v1
/// in production with v2 registered; an operator token.
fn serving_v1(home: Home) -> (Home, String, Daemon) {
    two_versions(&home);
    home.coach(&["deploy", "support:1", "--env", "production"])
        .expect_ok();
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    (home, tok, d)
}

/// An experiment file: control v1 against v2 on `primary`, guarded by
/// `guardrails`, deciding from `min_units` users per arm.
fn experiment_file(primary: &str, guardrails: &[&str], min_units: u64) -> String {
    format!(
        r#"model = "support"
environment = "production"
hypothesis = "v2 resolves more conversations"

[[arms]]
name = "control"
weight = 0.5

[[arms]]
name = "v2"
version = 2
weight = 0.5

[metrics]
primary = "{primary}"
secondary = ["conversation_length"]
guardrails = {guardrails:?}

[stopping]
min_units = {min_units}
"#
    )
}

fn show(d: &Daemon, tok: &str, name: &str) -> Value {
    let (s, v) = call("GET", &format!("{}/api/v1/experiments/{name}", d.url), tok);
    assert_eq!(s, 200, "{v}");
    v
}

/// Wait until experiment `name` runs and answers predictions: the store
/// says running a moment before the routes have loaded its arms, and a
/// simulated user must not straddle the two.
fn wait_running(d: &Daemon, tok: &str, name: &str) {
    wait_for(d, tok, name, &["running"]);
    let sim = Simulator::new(d, tok);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // A greeting without a conversation: it counts no unit.
        let v = sim.predict(json!({"text": "hello there", "user_id": "routing-probe"}));
        if v["experiment"]["name"] == name {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "experiment `{name}` never answered a prediction: {v:#}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until experiment `name` is in one of `states`.
fn wait_for(d: &Daemon, tok: &str, name: &str, states: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = call("GET", &format!("{}/api/v1/experiments/{name}", d.url), tok);
        if s == 200 && states.contains(&v["state"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "experiment `{name}` never reached {states:?}: {v:#}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn better_treatment_is_promoted(home: Home) {
    let (home, tok, d) = serving_v1(home);
    // Subscribers hear it start, its results change and its decision.
    let events = {
        let (url, tok) = (format!("{}/api/v1/events", d.url), tok.clone());
        std::thread::spawn(move || {
            crate::daemon::sse(&url, &tok, |event, v| {
                event == "experiment.decided" && v["decision"] == "promote"
            })
        })
    };
    home.write(
        "workflows/experiments/v2-resolves-more.toml",
        &experiment_file("task_success", &["negative_rating_rate"], 150),
    );
    wait_running(&d, &tok, "v2-resolves-more");
    let sim = Simulator::new(&d, &tok);
    let better = Behaviour {
        resolved: [0.3, 0.6],
        ..NEUTRAL
    };
    let (versions, _) = sim.run(0, 800, better, 1);
    let v = wait_for(&d, &tok, "v2-resolves-more", &["promoted", "rolled_back"]);
    assert_eq!(v["state"], "promoted", "{v:#}");
    assert!(v["reason"].as_str().unwrap().contains("v2 wins"), "{v}");
    let events = events.join().unwrap();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    for expected in [
        "experiment.started",
        "experiment.results",
        "experiment.decided",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let (_, decided) = events.last().unwrap();
    assert_eq!(decided["experiment"], "v2-resolves-more", "{decided}");
    assert!(
        decided["reason"].as_str().unwrap().contains("task_success"),
        "{decided}"
    );
    // It was decided on both arms, split about half and half, before the
    // simulated traffic ended (the rest was all v2's).
    let units: Vec<u64> = v["results"]["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["units"].as_u64().unwrap())
        .collect();
    let share = units[1] as f64 / (units[0] + units[1]) as f64;
    assert!(units[0] >= 150 && (0.4..0.6).contains(&share), "{units:?}");
    assert!(versions.values().filter(|v| **v == 2).count() > 400);
    // Everyone gets v2 now, through the deployment.
    let after = sim.predict(json!({"text": "hello", "user_id": "user-1"}));
    assert_eq!(after["version"], 2, "{after}");
    assert!(after["experiment"].is_null(), "{after}");
    let h = history(&home);
    let actions: Vec<(&str, &str)> = h
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["how"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("deploy", "experiment"),
            ("split", "experiment"),
            ("deploy", "manual")
        ],
        "{h:#?}"
    );
    assert_eq!(h[0]["to"]["version"], 2);
    // The command line shows the experiment and its decision.
    let out = home.coach(&["experiment", "show", "v2-resolves-more"]);
    let text = out.expect_ok().stdout();
    assert!(
        text.contains("promoted") && text.contains("task_success"),
        "{}",
        out.all()
    );
    // So does the dashboard: the effects as a forest plot, the p-value and
    // chance to win over the looks, and the decisions taken.
    let mut b = crate::dashboard::Browser::new(&d.url);
    assert_eq!(b.sign_in(&tok).status, 303);
    let list = b.get("/experiments");
    assert!(
        list.body.contains("href=\"/experiments/v2-resolves-more\""),
        "{}",
        list.body
    );
    let page = b.get("/experiments/v2-resolves-more").body;
    for part in [
        "Each treatment against the control, with its always-valid interval",
        "p-value (Holm-adjusted) against hours",
        "Chance to win against hours",
        "Sample ratio check: no mismatch",
        "Decided: <strong>promote</strong>",
    ] {
        assert!(page.contains(part), "{part} missing: {page}");
    }
}

#[test]
fn a_truly_better_treatment_is_promoted_on_sqlite() {
    better_treatment_is_promoted(daemon_home(LOOK));
}

#[test]
fn a_truly_better_treatment_is_promoted_on_postgres() {
    let pg = Postgres::create();
    let home = crate::daemon::postgres_home(&pg);
    let config = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(
        &home.config,
        config.replace("[daemon]\n", &format!("[daemon]\n{LOOK}")),
    )
    .unwrap();
    better_treatment_is_promoted(home);
}

#[test]
fn a_treatment_breaching_a_guardrail_is_rolled_back() {
    let (home, tok, d) = serving_v1(daemon_home(LOOK));
    home.write(
        "workflows/experiments/v2-annoys.toml",
        &experiment_file("task_success", &["negative_rating_rate"], 100),
    );
    wait_running(&d, &tok, "v2-annoys");
    let annoying = Behaviour {
        negative: [0.1, 0.6],
        ..NEUTRAL
    };
    Simulator::new(&d, &tok).run(0, 500, annoying, 2);
    let v = wait_for(&d, &tok, "v2-annoys", &["promoted", "rolled_back"]);
    assert_eq!(v["state"], "rolled_back", "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("negative_rating_rate"),
        "{v}"
    );
    let h = history(&home);
    assert_eq!(h[0]["action"], "rollback", "{h:#?}");
    assert_eq!(h[0]["to"]["version"], 1);
    assert_eq!(h[0]["from"]["version"], 2);
    // v1 still serves everyone.
    let after = Simulator::new(&d, &tok).predict(json!({"text": "hi", "user_id": "user-7"}));
    assert_eq!(after["version"], 1);
}

#[test]
fn an_aa_experiment_through_the_daemon_promotes_nothing() {
    // v2 is trained on the same data with the same seed: the same model.
    // Three of them, one after the other, each with its own users.
    let (home, tok, d) = serving_v1(daemon_home(LOOK));
    for k in 0..3u64 {
        let name = format!("a-a-{k}");
        home.write(
            &format!("workflows/experiments/{name}.toml"),
            &experiment_file("task_success", &["negative_rating_rate"], 50),
        );
        wait_running(&d, &tok, &name);
        Simulator::new(&d, &tok).run(1000 * k as usize, 600, NEUTRAL, 3 + k);
        std::thread::sleep(Duration::from_millis(600));
        let v = show(&d, &tok, &name);
        assert_eq!(v["state"], "running", "{v:#}");
        assert_eq!(v["decision_now"]["decision"], "continue", "{v:#}");
        let (s, v) = post_json(
            &format!("{}/api/v1/experiments/{name}/stop", d.url),
            &tok,
            &json!({"reason": "A/A over"}),
        );
        assert_eq!((s, v["state"].as_str()), (200, Some("stopped")), "{v}");
    }
}

#[test]
fn an_injected_traffic_imbalance_is_flagged_and_nothing_is_decided() {
    let (home, tok, d) = serving_v1(daemon_home(LOOK));
    // The minimum comes late in the traffic (v2 logs about 240 of its
    // conversations): by then the sequential sample-ratio test has long
    // flagged the loss. With a minimum reached early, a look could find v2
    // significant before the ratio test had the evidence, and decide.
    home.write(
        "workflows/experiments/lossy.toml",
        &experiment_file("task_success", &[], 180),
    );
    wait_running(&d, &tok, "lossy");
    // v2 is far better, but 40% of its conversations never reach Coach.
    let lossy = Behaviour {
        resolved: [0.2, 0.8],
        v2_lost: 0.4,
        ..NEUTRAL
    };
    Simulator::new(&d, &tok).run(0, 800, lossy, 4);
    std::thread::sleep(Duration::from_millis(800));
    let v = show(&d, &tok, "lossy");
    assert_eq!(v["results"]["srm"]["flagged"], true, "{v:#}");
    assert_eq!(v["state"], "running", "no decision while flagged: {v:#}");
    assert!(
        v["decision_now"]["reason"]
            .as_str()
            .unwrap()
            .contains("sample ratio mismatch"),
        "{v:#}"
    );
    // Without the check, v2 would have won.
    assert!(
        !v["results"]["winners"].as_array().unwrap().is_empty(),
        "{v:#}"
    );
}

#[test]
fn kill_9_mid_experiment_keeps_every_assignment_and_every_count() {
    let (home, tok, d) = serving_v1(daemon_home(LOOK));
    // A minimum no traffic here reaches: it stays running.
    home.write(
        "workflows/experiments/long.toml",
        &experiment_file("task_success", &[], 100_000),
    );
    wait_running(&d, &tok, "long");
    let (before, logged) = Simulator::new(&d, &tok).run(0, 200, NEUTRAL, 5);
    d.kill9();
    let d = Daemon::start(&home);
    let sim = Simulator::new(&d, &tok);
    for (user, version) in &before {
        let v = sim.predict(json!({"text": "hello again", "user_id": user}));
        assert_eq!(
            &v["version"], version,
            "{user} changed arm after the restart"
        );
        assert_eq!(v["experiment"]["name"], "long");
    }
    let (_, more) = sim.run(200, 100, NEUTRAL, 6);
    let v = show(&d, &tok, "long");
    let units: BTreeMap<i64, u64> = v["results"]["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["version"].as_i64().unwrap(), a["units"].as_u64().unwrap()))
        .collect();
    for version in [1, 2] {
        assert_eq!(
            units[&version],
            logged.get(&version).unwrap_or(&0) + more.get(&version).unwrap_or(&0),
            "v{version}: every conversation counted once: {v:#}"
        );
    }
    let resolved: f64 = v["results"]["metrics"][0]["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["value"].as_f64().unwrap())
        .sum();
    assert!(resolved > 0.0, "{v:#}");
}

#[test]
fn bad_experiments_are_refused_naming_the_field_and_change_nothing() {
    let (home, tok, d) = serving_v1(daemon_home(LOOK));
    let body = |f: &dyn Fn(&mut Value)| {
        let mut b = json!({
            "name": "bad",
            "model": "support",
            "arms": [{"name": "control", "weight": 0.5}, {"name": "v2", "version": 2, "weight": 0.5}],
            "metrics": {"primary": "task_success"},
        });
        f(&mut b);
        b
    };
    for (b, status, names) in [
        (body(&|b| b["model"] = json!("nope")), 422, "model"),
        (body(&|b| b["environment"] = json!("staging")), 422, "model"),
        (
            body(&|b| b["arms"][0]["weight"] = json!(0.7)),
            422,
            "arms: the weights sum to 1.2",
        ),
        (
            body(&|b| b["arms"][1]["version"] = json!(9)),
            422,
            "arms[1].version",
        ),
        (
            body(&|b| b["arms"][1]["version"] = json!(1)),
            422,
            "arms[1].version",
        ),
        (
            body(&|b| b["metrics"]["primary"] = json!("happiness")),
            422,
            "metrics.primary",
        ),
        (
            body(&|b| b["stopping"] = json!({"decide": "/etc/passwd"})),
            400,
            "decide",
        ),
    ] {
        let (s, v) = post_json(&format!("{}/api/v1/experiments", d.url), &tok, &b);
        assert_eq!(s, status, "{b}: {v}");
        assert!(v["message"].as_str().unwrap().contains(names), "{b}: {v}");
    }
    let (_, list) = call("GET", &format!("{}/api/v1/experiments", d.url), &tok);
    assert_eq!(list["experiments"], json!([]), "nothing started");
    // A good one starts; a second on the same environment is refused.
    let (s, v) = post_json(
        &format!("{}/api/v1/experiments", d.url),
        &tok,
        &body(&|_| {}),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = post_json(
        &format!("{}/api/v1/experiments", d.url),
        &tok,
        &body(&|b| b["name"] = json!("another")),
    );
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("`bad` is already running"),
        "{v}"
    );
    // While it runs, a manual deploy there is refused too.
    let (s, v) = post_json(
        &format!("{}/api/v1/deployments", d.url),
        &tok,
        &json!({"model": "support:2", "environment": "production"}),
    );
    assert_eq!(s, 409, "{v}");
    // Files the daemon cannot take are reported, once, and start nothing:
    // one too large, one not UTF-8.
    home.write("workflows/experiments/huge.toml", &"# x\n".repeat(600_000));
    std::fs::write(
        home.path("workflows/experiments/binary.toml"),
        [0xff, 0xfe, 0, 1],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(d.log().contains("an experiment file takes at most 65536")
        && d.log().contains("binary.toml: is not UTF-8 text"))
    {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        d.log().matches("is not UTF-8 text").count(),
        1,
        "reported once"
    );
    // A file with errors is reported located, and starts nothing.
    let broken = home.write(
        "broken.toml",
        "model = \"support\"\n[[arms]]\nname = \"control\"\n[metrics]\nprimary = \"nope\"\n",
    );
    let e = home.coach(&["experiment", "start", broken.to_str().unwrap()]);
    let all = e.all();
    assert!(
        all.contains("broken.toml:2:1: arms: an experiment has a control"),
        "{all}"
    );
    assert!(all.contains("broken.toml:5:11: metrics.primary"), "{all}");
    // Files meet the bounds the API's bodies meet, and a decision script
    // must live beside the experiments.
    let sneaky = home.write(
        "sneaky.toml",
        &experiment_file("task_success", &[], 50)
            .replace(
                "weight = 0.5\n\n[[arms]]\nname = \"v2\"",
                "weight = 1e-300\n\n[[arms]]\nname = \"v2\"",
            )
            .replace(
                "hypothesis = \"v2 resolves more conversations\"",
                "hypothesis = \"a\\u0000b\"",
            )
            .replace(
                "min_units = 50",
                "min_units = 50\nmax_duration = \"99999d\"\ndecide = \"/etc/passwd\"",
            ),
    );
    let all = home
        .coach(&["experiment", "start", sneaky.to_str().unwrap()])
        .all();
    for expected in [
        "arms[0].weight: 0.000000 must be between 0.0001",
        "hypothesis: at most 1000 characters, no control characters",
        "stopping.max_duration: at most 365d",
        "stopping.decide: `/etc/passwd` is not a script file inside",
    ] {
        assert!(all.contains(expected), "{expected}: {all}");
    }
    assert!(!all.contains("root:"), "{all}");
}

/// One prediction for each of `users`.
fn traffic(sim: &Simulator, users: std::ops::Range<usize>) {
    for u in users {
        sim.predict(json!({"text": "hello", "user_id": format!("c-{u}")}));
    }
}

#[test]
fn a_canary_walks_its_steps_and_resumes_at_its_step_after_kill_9() {
    let (home, tok, d) = serving_v1(daemon_home(LOOK));
    let out = home.coach(&[
        "deploy",
        "support:2",
        "--env",
        "production",
        "--strategy",
        "canary",
        "--steps",
        "20,50,100",
        "--min-requests",
        "30",
        "--hold",
        "0s",
    ]);
    assert!(
        out.expect_ok().stdout().contains("canary `"),
        "{}",
        out.all()
    );
    let (_, list) = call("GET", &format!("{}/api/v1/experiments", d.url), &tok);
    let name = list["experiments"][0]["name"].as_str().unwrap().to_owned();
    let sim = Simulator::new(&d, &tok);
    // Enough traffic for the canary to see 30 requests at 20%.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut u = 0;
    while show(&d, &tok, &name)["step"] == 0 {
        traffic(&sim, u..u + 50);
        u += 50;
        std::thread::sleep(Duration::from_millis(300));
        assert!(Instant::now() < deadline, "{}", d.log());
    }
    let v = show(&d, &tok, &name);
    assert_eq!(v["percent"], 50.0, "{v:#}");
    d.kill9();
    let d = Daemon::start(&home);
    let v = show(&d, &tok, &name);
    assert_eq!(
        (v["step"].as_u64(), v["state"].as_str()),
        (Some(1), Some("running")),
        "{v:#}"
    );
    let sim = Simulator::new(&d, &tok);
    let deadline = Instant::now() + Duration::from_secs(60);
    while show(&d, &tok, &name)["state"] == "running" {
        traffic(&sim, u..u + 50);
        u += 50;
        std::thread::sleep(Duration::from_millis(300));
        assert!(Instant::now() < deadline, "{}", d.log());
    }
    let v = show(&d, &tok, &name);
    assert_eq!(v["state"], "promoted", "{v:#}");
    let h = history(&home);
    let steps: Vec<(&str, &str, i64)> = h
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["how"].as_str().unwrap(),
                r["to"]["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("deploy", "canary", 2),
            ("split", "canary", 2),
            ("split", "manual", 2),
            ("deploy", "manual", 1)
        ],
        "{h:#?}"
    );
    assert_eq!(
        sim.predict(json!({"text": "hi", "user_id": "z"}))["version"],
        2
    );
}

#[test]
fn a_canary_breaching_a_guardrail_rolls_back_at_once() {
    let (home, tok, d) = serving_v1(daemon_home(LOOK));
    let (s, v) = post_json(
        &format!("{}/api/v1/deployments", d.url),
        &tok,
        &json!({"model": "support:2", "environment": "production", "strategy": "canary",
                "canary": {"steps": [50, 100], "min_requests": 100000, "hold": "1h"}}),
    );
    assert_eq!(s, 200, "{v}");
    let name = v["name"].as_str().unwrap().to_owned();
    // Users hate the canary's answers.
    let hated = Behaviour {
        negative: [0.05, 0.7],
        ..NEUTRAL
    };
    Simulator::new(&d, &tok).run(0, 300, hated, 8);
    let v = wait_for(&d, &tok, &name, &["rolled_back", "promoted"]);
    assert_eq!(v["state"], "rolled_back", "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("negative_rating_rate"),
        "{v}"
    );
    let h = history(&home);
    assert_eq!(
        (h[0]["action"].as_str(), h[0]["how"].as_str()),
        (Some("rollback"), Some("automatic")),
        "{h:#?}"
    );
    let (_, deployments) = call("GET", &format!("{}/api/v1/deployments", d.url), &tok);
    assert_eq!(deployments["deployments"][0]["serving"]["version"], 1);
}
