//! Every formula against the reference vectors (scipy, statsmodels,
//! gbstats, mpmath) beside the workspace, or in `COACH_ABTEST_DIR`.

use super::*;
use crate::experiment::assign;
use serde_json::Value;
use std::path::PathBuf;

fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("COACH_ABTEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/abtest")
        });
    if dir.join("vectors.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: no reference vectors at {} (set COACH_ABTEST_DIR)",
            dir.display()
        );
        None
    }
}

fn load(name: &str) -> Option<Value> {
    let dir = vectors_dir()?;
    let text = std::fs::read_to_string(dir.join(name)).expect("readable vectors");
    Some(serde_json::from_str(&text).expect("vectors are JSON"))
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        other => panic!("not a number: {other}"),
    }
}

/// Relative agreement to `tol`, or absolute where the expected value is
/// within `tol` of zero (a relative error of a zero means nothing).
#[track_caller]
fn close(what: &str, got: f64, want: &Value, tol: f64) {
    let want = num(want);
    let err = if want.abs() < tol {
        (got - want).abs()
    } else {
        ((got - want) / want).abs()
    };
    assert!(
        err <= tol,
        "{what}: got {got:e}, want {want:e} (error {err:e} > {tol:e})"
    );
}

#[track_caller]
fn close_pair(what: &str, got: (f64, f64), want: &Value, tol: f64) {
    close(&format!("{what}[0]"), got.0, &want[0], tol);
    close(&format!("{what}[1]"), got.1, &want[1], tol);
}

const TOL: f64 = 1e-9;
/// Where the reference came from numerical integration.
const TOL_INTEGRATED: f64 = 1e-6;
const ALPHA: f64 = 0.05;

/// gbstats' four readings of `control` vs `treatment` against `want`
/// (the `gbstats_0_8_0` block of a case).
fn check_gbstats(case: &str, control: &Arm, treatment: &Arm, want: &Value) {
    for (scale, key) in [(Scale::Absolute, "absolute"), (Scale::Relative, "relative")] {
        let w = &want[key];
        let what = |s: &str| format!("{case} {key} {s}");
        let effect = match Effect::between(control, treatment, scale) {
            Ok(e) => e,
            Err(why) => {
                assert!(
                    !w["frequentist_fixed"]["error_message"].is_null(),
                    "{}: unavailable ({why}) where gbstats has a result",
                    what("")
                );
                continue;
            }
        };
        assert!(w["frequentist_fixed"]["error_message"].is_null());
        let fixed = effect.fixed(ALPHA);
        let f = &w["frequentist_fixed"];
        close(&what("fixed estimate"), fixed.estimate, &f["expected"], TOL);
        close(&what("fixed se"), effect.se, &f["uplift_stddev"], TOL);
        close_pair(&what("fixed ci"), fixed.ci, &f["ci"], TOL);
        close(&what("fixed p"), fixed.p_value, &f["p_value"], TOL);
        let seq = effect.sequential(ALPHA, effect::SEQUENTIAL_TUNING);
        let s = &w["frequentist_sequential_N5000"];
        close_pair(&what("sequential ci"), seq.ci, &s["ci"], TOL);
        close(&what("sequential p"), seq.p_value, &s["p_value"], TOL);
        let mut priors = vec![(Prior::Flat, "bayesian_flat_prior")];
        if scale == Scale::Relative {
            priors.push((
                Prior::Normal { mean: 0.0, sd: 0.3 },
                "bayesian_proper_prior_N(0,0.3^2)",
            ));
        }
        for (prior, key) in priors {
            let b = effect.bayesian(prior, ALPHA);
            let v = &w[key];
            close(&what("bayes mean"), b.estimate, &v["expected"], TOL);
            close(&what("bayes sd"), b.sd, &v["uplift_stddev"], TOL);
            close_pair(&what("bayes ci"), b.ci, &v["ci"], TOL);
            close(
                &what("bayes chance"),
                b.chance_to_win,
                &v["chance_to_win"],
                TOL,
            );
            close_pair(&what("bayes risk"), b.risk, &v["risk"], TOL);
        }
    }
}

#[test]
fn proportions_match_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    let cases = v["binomial"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let i = &case["input"];
        let c = Proportion {
            n: i["control_n"].as_u64().unwrap(),
            successes: i["control_conversions"].as_u64().unwrap(),
        };
        let t = Proportion {
            n: i["treatment_n"].as_u64().unwrap(),
            successes: i["treatment_conversions"].as_u64().unwrap(),
        };
        let z = proportions::z_test(&c, &t, ALPHA).expect("a z-test");
        let want = &case["pooled_z_test"];
        close(
            &format!("{name} pooled p"),
            z.pooled_rate,
            &want["pooled_p"],
            TOL,
        );
        close(
            &format!("{name} pooled se"),
            z.se_pooled,
            &want["se_pooled"],
            TOL,
        );
        close(&format!("{name} z"), z.z, &want["z"], TOL);
        close(&format!("{name} z p"), z.p_value, &want["p_two_sided"], TOL);
        let wald = &case["unpooled_wald"];
        close(&format!("{name} wald se"), z.se_wald, &wald["se"], TOL);
        close_pair(&format!("{name} wald ci"), z.ci, &wald["ci95_diff"], TOL);

        let beta = proportions::beta_comparison(&c, &t).expect("exact sums");
        let want = &case["beta_binomial_prior_1_1"];
        close(
            &format!("{name} beta chance"),
            beta.chance_to_win,
            &want["prob_treatment_beats_control_exact_sum"],
            TOL,
        );
        close(
            &format!("{name} beta loss shipped"),
            beta.loss_if_shipped,
            &want["expected_loss_if_ship_treatment"],
            TOL_INTEGRATED,
        );
        close(
            &format!("{name} beta loss kept"),
            beta.loss_if_kept,
            &want["expected_loss_if_keep_control"],
            TOL_INTEGRATED,
        );
        check_gbstats(name, &c.arm(), &t.arm(), &case["gbstats_0_8_0"]);
    }
}

#[test]
fn welch_t_and_relative_lift_match_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    for case in v["welch"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let arm = |a: &Value| Arm {
            n: num(&a["n"]),
            mean: num(&a["mean"]),
            variance: num(&a["sd"]).powi(2),
        };
        let (c, t) = (
            arm(&case["input"]["control"]),
            arm(&case["input"]["treatment"]),
        );
        let e = Effect::between(&c, &t, Scale::Absolute).unwrap();
        let w = &case["welch"];
        close(&format!("{name} diff"), e.estimate, &w["diff"], TOL);
        close(&format!("{name} se"), e.se, &w["se"], TOL);
        close(
            &format!("{name} dof"),
            e.dof,
            &w["df_welch_satterthwaite"],
            TOL,
        );
        let fixed = e.fixed(ALPHA);
        close(&format!("{name} p"), fixed.p_value, &w["p_two_sided"], TOL);
        close_pair(&format!("{name} ci"), fixed.ci, &w["ci95_diff"], TOL);
        let r = Effect::between(&c, &t, Scale::Relative).unwrap();
        let d = &case["relative_lift_delta_method"];
        close(&format!("{name} lift"), r.estimate, &d["lift"], TOL);
        close(&format!("{name} lift se"), r.se, &d["se"], TOL);
        if let Some(sums) = case.get("gbstats_0_8_0_input") {
            let m = |s: &Value| {
                Moments {
                    n: s["n"].as_u64().unwrap(),
                    sum: num(&s["sum"]),
                    sum_squares: num(&s["sum_squares"]),
                }
                .arm()
            };
            check_gbstats(
                name,
                &m(&sums["control"]),
                &m(&sums["treatment"]),
                &case["gbstats_0_8_0"],
            );
        }
    }
}

#[test]
fn ratio_metrics_match_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    for case in v["ratio_delta"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let m = |s: &Value| {
            RatioMoments {
                n: s["n"].as_u64().unwrap(),
                m_sum: num(&s["m_sum"]),
                m_sum_squares: num(&s["m_sum_sq"]),
                d_sum: num(&s["d_sum"]),
                d_sum_squares: num(&s["d_sum_sq"]),
                md_sum: num(&s["md_sum"]),
            }
            .arm()
        };
        let (c, t) = (
            m(&case["input_summary"]["control"]),
            m(&case["input_summary"]["treatment"]),
        );
        let want = &case["manual"];
        close(
            &format!("{name} ratio"),
            c.mean,
            &want["ratio_control"],
            TOL,
        );
        close(
            &format!("{name} unit var"),
            c.variance,
            &want["unit_var_control"],
            TOL,
        );
        close(
            &format!("{name} unit var t"),
            t.variance,
            &want["unit_var_treatment"],
            TOL,
        );
        check_gbstats(name, &c, &t, &case["gbstats_0_8_0"]);
    }
}

#[test]
fn cuped_matches_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    for case in v["cuped"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let m = |s: &Value| CovariateMoments {
            n: s["n"].as_u64().unwrap(),
            y_sum: num(&s["y_sum"]),
            y_sum_squares: num(&s["y_sum_sq"]),
            x_sum: num(&s["x_sum"]),
            x_sum_squares: num(&s["x_sum_sq"]),
            xy_sum: num(&s["xy_sum"]),
        };
        let (c, t) = (
            m(&case["input_summary"]["control"]),
            m(&case["input_summary"]["treatment"]),
        );
        let (theta, ac, at) = summary::cuped(&c, &t);
        let want = &case["manual"];
        close(&format!("{name} theta"), theta, &want["theta_pooled"], TOL);
        close(
            &format!("{name} mean c"),
            ac.mean,
            &want["adj_mean_control"],
            TOL,
        );
        close(
            &format!("{name} mean t"),
            at.mean,
            &want["adj_mean_treatment"],
            TOL,
        );
        close(
            &format!("{name} var c"),
            ac.variance,
            &want["adj_unit_var_control"],
            TOL,
        );
        close(
            &format!("{name} var t"),
            at.variance,
            &want["adj_unit_var_treatment"],
            TOL,
        );
        let e = Effect::between(&ac, &at, Scale::Absolute).unwrap();
        close(&format!("{name} diff"), e.estimate, &want["diff"], TOL);
        close(&format!("{name} se"), e.se, &want["se"], TOL);
        let unadjusted = t.unadjusted().mean - c.unadjusted().mean;
        close(
            &format!("{name} raw diff"),
            unadjusted,
            &want["unadjusted_diff"],
            TOL,
        );
        // The reference notes that gbstats 0.8.0's relative CUPED
        // variance differs from GrowthBook's current one: absolute only.
        let g = &case["gbstats_0_8_0"]["absolute"];
        let fixed = e.fixed(ALPHA);
        close_pair(
            &format!("{name} ci"),
            fixed.ci,
            &g["frequentist_fixed"]["ci"],
            TOL,
        );
        close(
            &format!("{name} p"),
            fixed.p_value,
            &g["frequentist_fixed"]["p_value"],
            TOL,
        );
        let seq = e.sequential(ALPHA, effect::SEQUENTIAL_TUNING);
        let s = &g["frequentist_sequential_N5000"];
        close_pair(&format!("{name} seq ci"), seq.ci, &s["ci"], TOL);
        close(&format!("{name} seq p"), seq.p_value, &s["p_value"], TOL);
        let b = e.bayesian(Prior::Flat, ALPHA);
        let bw = &g["bayesian_flat_prior"];
        close(
            &format!("{name} chance"),
            b.chance_to_win,
            &bw["chance_to_win"],
            TOL,
        );
        close_pair(&format!("{name} risk"), b.risk, &bw["risk"], TOL);
    }
}

#[test]
fn sample_ratio_mismatch_matches_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    for case in v["srm"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let observed: Vec<u64> = case["input"]["observed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_u64().unwrap())
            .collect();
        let weights: Vec<f64> = case["input"]["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect();
        let got = srm::chi_square(&observed, &weights);
        close(&format!("{name} chi2"), got.chi2, &case["chi2"], TOL);
        assert_eq!(got.df as u64, case["df"].as_u64().unwrap(), "{name} df");
        close(&format!("{name} p"), got.p_value, &case["p_value"], TOL);
        let flag = case["flag_at_0.001 (GrowthBook/Eppo default)"]
            .as_bool()
            .unwrap();
        assert_eq!(got.flagged, flag, "{name} flag");
    }
    for case in v["srm_sequential"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let p0: Vec<f64> = case["input"]["null_probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect();
        let mut test = srm::SequentialSrm::new(&p0);
        let days = case["input"]["daily_counts"].as_array().unwrap();
        for (day, want) in days.iter().zip(case["per_step"].as_array().unwrap()) {
            let counts: Vec<u64> = day
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect();
            test.update(&counts);
            // Log Bayes factors are differences of log-gammas of counts in
            // the tens of thousands: compared absolutely, which is the
            // Bayes factor itself to 1e-9 relative.
            let got = test.log_bayes_factor;
            let want_lbf = num(&want["log_bayes_factor"]);
            assert!(
                (got - want_lbf).abs() <= TOL,
                "{name} log BF: got {got}, want {want_lbf}"
            );
            close(&format!("{name} p"), test.p_value, &want["p_value"], TOL);
        }
    }
}

#[test]
fn msprt_matches_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    for case in v["msprt"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let lambda = effect::msprt_ratio(num(&case["diff"]), num(&case["S2"]), num(&case["tau2"]));
        close(&format!("{name} lambda"), lambda, &case["Lambda"], TOL);
        close(
            &format!("{name} p"),
            effect::msprt_p(1.0, lambda),
            &case["always_valid_p_single_look"],
            TOL,
        );
    }
}

#[test]
fn sample_sizes_match_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    for case in v["sample_size"].as_array().unwrap() {
        let i = &case["input"];
        let (pc, pt) = (num(&i["p_control"]), num(&i["p_treatment"]));
        let name = format!("{pc} → {pt}");
        close(
            &format!("{name} h"),
            plan::cohens_h(pc, pt),
            &case["cohens_h"],
            TOL,
        );
        let p = plan::sample_size(
            pc,
            pt,
            num(&i["alpha"]),
            num(&i["power"]),
            num(&i["ratio_n_treatment_over_n_control"]),
        )
        .unwrap();
        close(
            &format!("{name} n"),
            p.n_control,
            &case["statsmodels_NormalIndPower_nobs1_control"],
            TOL,
        );
        assert_eq!(
            p.n_control.ceil() as u64,
            case["statsmodels_nobs1_ceil"].as_u64().unwrap()
        );
        close(&format!("{name} power"), p.power, &i["power"], TOL);
    }
}

#[test]
fn multiple_testing_matches_the_reference() {
    let Some(v) = load("vectors.json") else {
        return;
    };
    for case in v["multiple_testing"].as_array().unwrap() {
        let p: Vec<f64> = case["input_p_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect();
        let want = &case["statsmodels_multipletests"];
        for (got, key) in [
            (multiple::holm(&p), "holm"),
            (multiple::benjamini_hochberg(&p), "fdr_bh"),
        ] {
            for (k, g) in got.iter().enumerate() {
                close(&format!("{key}[{k}]"), *g, &want[key]["adjusted"][k], TOL);
            }
        }
    }
}

#[test]
fn assignment_matches_growthbook() {
    let Some(cases) = load("growthbook-sdk-cases.json") else {
        return;
    };
    for case in cases["hash"].as_array().unwrap() {
        let (seed, id) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
        let version = assign::HashVersion::from_number(case[2].as_u64().unwrap() as u32);
        match version {
            Some(version) => close(
                &format!("hash({seed:?}, {id:?})"),
                assign::hash(seed, id, version),
                &case[3],
                1e-12,
            ),
            None => assert!(case[3].is_null(), "an unknown version hashes to nothing"),
        }
    }
    for case in cases["getBucketRange"].as_array().unwrap() {
        let name = case[0].as_str().unwrap();
        let args = &case[1];
        let weights: Option<Vec<f64>> = args[2].as_array().map(|w| w.iter().map(num).collect());
        let got = assign::bucket_ranges(
            args[0].as_u64().unwrap() as usize,
            num(&args[1]),
            weights.as_deref(),
        );
        let want = case[2].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(want) {
            close_pair(name, *g, w, 1e-12);
        }
    }
    for case in cases["chooseVariation"].as_array().unwrap() {
        let name = case[0].as_str().unwrap();
        let ranges: Vec<(f64, f64)> = case[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (num(&r[0]), num(&r[1])))
            .collect();
        let want = case[3].as_i64().unwrap();
        let got = assign::choose(num(&case[1]), &ranges).map_or(-1, |i| i as i64);
        assert_eq!(got, want, "{name}");
    }
    for case in cases["inNamespace"].as_array().unwrap() {
        let name = case[0].as_str().unwrap();
        let ns = &case[2];
        let got = assign::in_namespace(
            case[1].as_str().unwrap(),
            ns[0].as_str().unwrap(),
            num(&ns[1]),
            num(&ns[2]),
        );
        assert_eq!(got, case[3].as_bool().unwrap(), "{name}");
    }
    let Some(v) = load("vectors.json") else {
        return;
    };
    for pair in v["hashing"]["pairs"].as_array().unwrap() {
        let (seed, id) = (
            pair["seed"].as_str().unwrap(),
            pair["user_id"].as_str().unwrap(),
        );
        close(
            "v1",
            assign::hash(seed, id, assign::HashVersion::V1),
            &pair["v1"],
            1e-12,
        );
        close(
            "v2",
            assign::hash(seed, id, assign::HashVersion::V2),
            &pair["v2"],
            1e-12,
        );
        let even = assign::bucket_ranges(2, 1.0, None);
        assert_eq!(
            assign::assign(seed, id, &even).map_or(-1, |i| i as i64),
            pair["variation_50_50_v2"].as_i64().unwrap()
        );
        assert_eq!(
            u64::from(assign::fnv1a32(&format!("{id}{seed}"))),
            pair["fnv1a32(value+seed)"].as_u64().unwrap()
        );
        assert_eq!(
            assign::in_namespace(id, "promo", 0.0, 0.5),
            pair["inNamespace(ns='promo',0,0.5)"].as_bool().unwrap()
        );
        let three = assign::bucket_ranges(3, 0.8, Some(&[0.5, 0.25, 0.25]));
        assert_eq!(
            assign::assign(seed, id, &three).map_or(-1, |i| i as i64),
            pair["variation_3way_cov0.8_v2"].as_i64().unwrap()
        );
    }
}

/// Conversions each arm needs before a look counts (GrowthBook's default
/// minimum sample).
const MIN_SAMPLE: u64 = 150;

use crate::experiment::draws::SplitMix;

/// 200 A/A experiments (both arms convert at 10%), 100 users a minute,
/// looked at every minute for 24 hours from the minute each arm has
/// [`MIN_SAMPLE`] conversions; the first significant look decides (promote
/// when the treatment looks better). Peeking at a fixed-horizon test
/// promotes a "winner" far more often than its 5%; the sequential test
/// keeps false promotions under 5%. (Without the minimum, the delta
/// method's relative lift is unreliable in the first minutes — a handful
/// of conversions per arm — and the sequential rate of any significant
/// look is about 7% instead of 5%.)
#[test]
fn peeking_every_minute_at_aa_experiments_stays_under_alpha_only_sequentially() {
    let (experiments, minutes, per_minute) = (200, 24 * 60, 100);
    let mut rng = SplitMix(20261130);
    // Per test: experiments with a significant look, and those whose first
    // significant look favoured the treatment (a false promotion).
    let (mut naive, mut sequential) = ([0usize; 2], [0usize; 2]);
    for _ in 0..experiments {
        let mut arms = [Proportion::default(); 2];
        let (mut naive_first, mut sequential_first) = (None, None);
        for _ in 0..minutes {
            for _ in 0..per_minute {
                let arm = &mut arms[usize::from(rng.next() < 0.5)];
                arm.n += 1;
                arm.successes += u64::from(rng.next() < 0.10);
            }
            if arms[0].successes.min(arms[1].successes) < MIN_SAMPLE {
                continue;
            }
            let Ok(e) = Effect::between(&arms[0].arm(), &arms[1].arm(), Scale::Relative) else {
                continue;
            };
            let fixed = e.fixed(ALPHA);
            if naive_first.is_none() && fixed.significant(ALPHA) {
                naive_first = Some(fixed.estimate > 0.0);
            }
            let seq = e.sequential(ALPHA, effect::SEQUENTIAL_TUNING);
            if sequential_first.is_none() && seq.significant(ALPHA) {
                sequential_first = Some(seq.estimate > 0.0);
            }
            if naive_first.is_some() && sequential_first.is_some() {
                break;
            }
        }
        for (count, first) in [
            (&mut naive, naive_first),
            (&mut sequential, sequential_first),
        ] {
            if let Some(promoted) = first {
                count[0] += 1;
                count[1] += usize::from(promoted);
            }
        }
    }
    let rate = |k: usize| k as f64 / experiments as f64;
    eprintln!(
        "A/A, peeking every minute: fixed-horizon {:.1}% significant, {:.1}% promoted; sequential {:.1}% significant, {:.1}% promoted",
        100.0 * rate(naive[0]),
        100.0 * rate(naive[1]),
        100.0 * rate(sequential[0]),
        100.0 * rate(sequential[1])
    );
    assert!(
        rate(sequential[1]) <= ALPHA,
        "sequential promotions {}",
        rate(sequential[1])
    );
    assert!(
        rate(sequential[0]) <= ALPHA,
        "sequential decisions {}",
        rate(sequential[0])
    );
    assert!(
        rate(naive[1]) > 2.0 * ALPHA,
        "peeking should inflate the fixed test"
    );
}
