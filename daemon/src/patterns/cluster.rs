//! Fallback clusters: the messages the model could not place, grouped by
//! what they say, each with the intent it comes nearest to. A cluster far
//! from every intent is a candidate new intent.
//!
//! Messages with the same words are one weighted point. Points are
//! clustered in three passes over an inverted index (term → clusters
//! holding it among their heaviest terms), so a point is compared only
//! with clusters that share one of its heaviest terms, never with all of
//! them:
//!
//! 1. most frequent first, each point joins the cluster whose running
//!    centroid is most similar, within `cluster_similarity`, or starts a
//!    new one;
//! 2. the clusters' centroids, largest first, are merged the same way
//!    (a topic's first messages may have started clusters of their own
//!    before its centroid settled);
//! 3. twice, each point moves to the centroid it is most similar to.

use super::text::{self, Sparse, Vocabulary};
use super::{Corpus, Message, MessageRef, Settings};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Terms a point is looked up by and a cluster indexed by: two short
/// texts within the similarity threshold share one of their heaviest few.
const KEY_TERMS: usize = 4;
/// Clusters compared per term looked up. Only a common word is a heavy
/// term of hundreds of clusters, and a common word alone rarely makes two
/// texts similar; the first clusters indexed under it are the largest, so
/// they are the ones compared.
const MAX_SCAN: usize = 100;
/// Terms a centroid keeps: enough for any topic, few enough that
/// comparing centroids stays cheap.
const CENTROID_TERMS: usize = 200;
/// Rounds of pass 3: the first moves most strays, the second those whose
/// first move emptied a stray cluster.
const REASSIGNMENTS: usize = 2;
const REPRESENTATIVES: usize = 5;
const TOP_TERMS: usize = 5;

/// Unplaced messages that say the same kind of thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackCluster {
    /// `cluster-` and a hash of its most typical message's words: the same
    /// while that message stays the most typical.
    pub id: String,
    /// Messages in it.
    pub size: usize,
    /// Conversations they come from.
    pub conversations: usize,
    /// How its volume moves; `None` when no message has a time.
    pub trend: Option<Trend>,
    /// Up to five messages closest to its centroid, most typical first.
    pub representatives: Vec<String>,
    /// The words and word pairs weighing most in it, heaviest first.
    pub top_terms: Vec<String>,
    /// A snake_case intent name made from its top terms.
    pub suggested_intent: String,
    /// The intent whose training examples are most similar; `None`
    /// when no intent's examples share a term with it.
    pub nearest_intent: Option<NearestIntent>,
    /// No intent is within `new_intent_similarity`: a candidate new
    /// intent.
    pub new_intent: bool,
    /// Mean cosine similarity of its messages to its centroid (1: all
    /// alike).
    pub cohesion: f64,
    /// Its messages, most typical first, at most `max_refs` of them
    /// (`size` counts them all).
    pub messages: Vec<MessageRef>,
}

/// An intent and how similar a cluster is to its training examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearestIntent {
    pub intent: String,
    /// Cosine similarity of the cluster's centroid to the intent's
    /// examples' centroid, 0 to 1.
    pub similarity: f64,
}

/// A cluster's messages in the recent half of the window against the
/// earlier half.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// The whole window, in days back from `now`.
    pub window_days: u32,
    /// Messages in its most recent half (later ones included).
    pub recent: usize,
    /// Messages in its earlier half.
    pub earlier: usize,
    pub direction: Direction,
}

/// Rising or falling: one half holds over 1.5 times the other and at
/// least two messages more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Rising,
    Steady,
    Falling,
}

/// Messages with the same words: one weighted point.
struct Point<'m, 'a> {
    key: String,
    members: Vec<&'m Message<'a>>,
    vec: Sparse,
}

/// Clusters as running sums of their points, looked up by their
/// heaviest terms.
struct Index {
    sums: Vec<Sparse>,
    norms: Vec<f64>,
    weights: Vec<f32>,
    /// The weight at which each cluster's heaviest terms were last
    /// indexed, and the terms indexed so far.
    indexed: Vec<(f32, Vec<u32>)>,
    postings: HashMap<u32, Vec<u32>>,
    /// The query that last saw each cluster, so a candidate is scored
    /// once.
    seen: Vec<u32>,
    query: u32,
}

impl Index {
    fn new() -> Index {
        Index {
            sums: Vec::new(),
            norms: Vec::new(),
            weights: Vec::new(),
            indexed: Vec::new(),
            postings: HashMap::new(),
            seen: Vec::new(),
            query: 0,
        }
    }

    /// A new cluster of `v` (unit length) with `weight` points.
    fn add(&mut self, v: &Sparse, weight: f32) -> u32 {
        let id = self.sums.len() as u32;
        self.sums
            .push(v.iter().map(|&(t, w)| (t, w * weight)).collect());
        self.norms.push(f64::from(weight));
        self.weights.push(weight);
        self.indexed.push((0.0, Vec::new()));
        self.seen.push(0);
        self.reindex(id);
        id
    }

    /// Add `v` with `weight` points to cluster `id`. Its centroid's
    /// heaviest terms are indexed again each time its weight doubles, as
    /// they settle from its first point's to its topic's; terms indexed
    /// before stay, and only cost a comparison.
    fn join(&mut self, id: u32, v: &Sparse, weight: f32) {
        let i = id as usize;
        let mut sum = text::add_scaled(&self.sums[i], v, weight);
        if sum.len() > 2 * CENTROID_TERMS {
            sum = text::keep_heaviest(sum, CENTROID_TERMS);
        }
        self.norms[i] = sum
            .iter()
            .map(|&(_, w)| f64::from(w).powi(2))
            .sum::<f64>()
            .sqrt();
        self.sums[i] = sum;
        self.weights[i] += weight;
        if self.weights[i] >= 2.0 * self.indexed[i].0 {
            self.reindex(id);
        }
    }

    fn reindex(&mut self, id: u32) {
        let i = id as usize;
        self.indexed[i].0 = self.weights[i];
        for t in text::heaviest(&self.sums[i], KEY_TERMS) {
            if !self.indexed[i].1.contains(&t) {
                self.indexed[i].1.push(t);
                self.postings.entry(t).or_default().push(id);
            }
        }
    }

    /// The cluster most similar to `v` (unit length) among those sharing
    /// one of its heaviest terms, with its cosine similarity.
    fn best(&mut self, v: &Sparse) -> Option<(u32, f64)> {
        self.query += 1;
        let mut best: Option<(u32, f64)> = None;
        for t in text::heaviest(v, KEY_TERMS) {
            let ids = self.postings.get(&t).map_or(&[][..], Vec::as_slice);
            for &id in &ids[..ids.len().min(MAX_SCAN)] {
                let i = id as usize;
                if self.seen[i] == self.query || self.norms[i] == 0.0 {
                    continue;
                }
                self.seen[i] = self.query;
                let sim = text::dot(v, &self.sums[i]) / self.norms[i];
                if best.is_none_or(|(b, s)| sim > s || (sim == s && id < b)) {
                    best = Some((id, sim));
                }
            }
        }
        best
    }

    fn len(&self) -> usize {
        self.sums.len()
    }
}

/// Cluster the unplaced messages.
pub(super) fn find(corpus: &Corpus, unplaced: &[&Message], s: &Settings) -> Vec<FallbackCluster> {
    let mut points: Vec<Point> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for &m in unplaced {
        let key = text::normalise(m.text);
        if key.is_empty() {
            continue;
        }
        match by_key.get(&key) {
            Some(&i) => points[i].members.push(m),
            None => {
                by_key.insert(key.clone(), points.len());
                points.push(Point {
                    key,
                    members: vec![m],
                    vec: Vec::new(),
                });
            }
        }
    }
    // Most frequent first, so leaders are what most users say; by text
    // next, so the input's order does not change the result.
    points.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut vocab = Vocabulary::default();
    let counts: Vec<Sparse> = points
        .iter()
        .map(|p| vocab.count(p.members[0].text))
        .collect();
    let mut by_intent: BTreeMap<&str, Vec<Sparse>> = BTreeMap::new();
    for e in &corpus.training {
        let c = vocab.count(&e.text);
        by_intent.entry(e.intent.as_str()).or_default().push(c);
    }
    for (p, c) in points.iter_mut().zip(&counts) {
        p.vec = vocab.weigh(c);
    }
    let intents: Vec<(&str, Sparse)> = by_intent
        .into_iter()
        .filter(|(i, _)| *i != s.oos_label)
        .map(|(i, cs)| {
            let vecs: Vec<Sparse> = cs.iter().map(|c| vocab.weigh(c)).collect();
            (
                i,
                text::centroid(vecs.iter().map(|v| (v, 1.0)), CENTROID_TERMS),
            )
        })
        .collect();

    let (cluster_of, sizes, centroids) = passes(&points, s.cluster_similarity);
    let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); centroids.len()];
    for (i, (p, &c)) in points.iter().zip(&cluster_of).enumerate() {
        members[c as usize].push((i, text::dot(&p.vec, &centroids[c as usize])));
    }
    let mut out: Vec<FallbackCluster> = members
        .into_iter()
        .enumerate()
        .filter(|&(c, _)| sizes[c] >= s.min_cluster.max(1))
        .map(|(c, mut m)| {
            m.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            describe(corpus, &points, &m, &centroids[c], &vocab, &intents, s)
        })
        .collect();
    out.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
    out
}

/// The three passes: each point's cluster, and each cluster's message
/// count and centroid.
fn passes(points: &[Point], threshold: f64) -> (Vec<u32>, Vec<usize>, Vec<Sparse>) {
    let mut running = Index::new();
    let mut cluster_of: Vec<u32> = Vec::with_capacity(points.len());
    for p in points {
        let weight = p.members.len() as f32;
        cluster_of.push(match running.best(&p.vec) {
            Some((c, sim)) if sim >= threshold => {
                running.join(c, &p.vec, weight);
                c
            }
            _ => running.add(&p.vec, weight),
        });
    }
    let (sizes, centroids) = summarise(points, &cluster_of, running.len());
    let mut order: Vec<usize> = (0..centroids.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut merged = Index::new();
    let mut merged_into = vec![0u32; centroids.len()];
    for c in order {
        let weight = sizes[c] as f32;
        merged_into[c] = match merged.best(&centroids[c]) {
            Some((k, sim)) if sim >= threshold => {
                merged.join(k, &centroids[c], weight);
                k
            }
            _ => merged.add(&centroids[c], weight),
        };
    }
    for c in &mut cluster_of {
        *c = merged_into[*c as usize];
    }
    let (mut sizes, mut centroids) = summarise(points, &cluster_of, merged.len());
    for _ in 0..REASSIGNMENTS {
        let mut nearest = Index::new();
        for (c, &size) in centroids.iter().zip(&sizes) {
            nearest.add(c, size as f32);
        }
        for (p, c) in points.iter().zip(&mut cluster_of) {
            let own = text::dot(&p.vec, &centroids[*c as usize]);
            if let Some((best, sim)) = nearest.best(&p.vec)
                && sim > own
            {
                *c = best;
            }
        }
        (sizes, centroids) = summarise(points, &cluster_of, centroids.len());
    }
    (cluster_of, sizes, centroids)
}

/// Each cluster's message count and centroid (points weighted by their
/// messages).
fn summarise(points: &[Point], cluster_of: &[u32], n: usize) -> (Vec<usize>, Vec<Sparse>) {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, &c) in cluster_of.iter().enumerate() {
        members[c as usize].push(i);
    }
    let sizes = members
        .iter()
        .map(|m| m.iter().map(|&i| points[i].members.len()).sum())
        .collect();
    let centroids = members
        .iter()
        .map(|m| {
            let parts = m
                .iter()
                .map(|&i| (&points[i].vec, points[i].members.len() as f32));
            text::centroid(parts, CENTROID_TERMS)
        })
        .collect();
    (sizes, centroids)
}

/// A cluster as reported, from its points (most typical first, with
/// their similarity to the centroid).
fn describe(
    corpus: &Corpus,
    points: &[Point],
    members: &[(usize, f64)],
    centroid: &Sparse,
    vocab: &Vocabulary,
    intents: &[(&str, Sparse)],
    s: &Settings,
) -> FallbackCluster {
    let messages = || members.iter().flat_map(|&(i, _)| &points[i].members);
    let size = messages().count();
    let cohesion = members
        .iter()
        .map(|&(i, sim)| sim * points[i].members.len() as f64)
        .sum::<f64>()
        / size as f64;
    // A lone `#` (some number) says nothing a person can read.
    let top_terms: Vec<String> = text::heaviest(centroid, TOP_TERMS + 1)
        .into_iter()
        .map(|t| vocab.terms[t as usize].clone())
        .filter(|t| t != "#")
        .take(TOP_TERMS)
        .collect();
    let representatives: Vec<String> = members
        .iter()
        .take(REPRESENTATIVES)
        .map(|&(i, _)| points[i].members[0].text.to_owned())
        .collect();
    let nearest_intent = intents
        .iter()
        .map(|(i, v)| (i, text::dot(centroid, v)))
        .filter(|&(_, sim)| sim > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(i, sim)| NearestIntent {
            intent: (*i).to_owned(),
            similarity: sim,
        });
    FallbackCluster {
        id: text::stable_id("cluster", &points[members[0].0].key),
        size,
        conversations: messages().map(|m| m.conv).collect::<HashSet<_>>().len(),
        trend: trend(messages().map(|m| m.at), corpus.now, s.trend_days),
        suggested_intent: intent_name(&top_terms, &representatives),
        representatives,
        top_terms,
        new_intent: nearest_intent
            .as_ref()
            .is_none_or(|n| n.similarity < s.new_intent_similarity),
        nearest_intent,
        cohesion,
        messages: messages()
            .take(s.max_refs)
            .map(|m| corpus.reference(m))
            .collect(),
    }
}

/// The two heaviest distinct words of the top terms, snake_case, in the
/// order the most typical message that holds both says them:
/// `talk_human`, not `human_talk`.
fn intent_name(top_terms: &[String], representatives: &[String]) -> String {
    let mut words: Vec<&str> = Vec::new();
    for w in top_terms.iter().flat_map(|t| t.split(' ')) {
        if !w.contains('#') && !words.contains(&w) {
            words.push(w);
        }
    }
    words.truncate(2);
    if let [a, b] = words[..] {
        let at = |said: &[String], w: &str| said.iter().position(|s| s == w);
        let order = representatives.iter().find_map(|r| {
            let said = text::words(r);
            Some((at(&said, a)?, at(&said, b)?))
        });
        if order.is_some_and(|(x, y)| y < x) {
            words.swap(0, 1);
        }
    }
    if words.is_empty() {
        return "new_intent".into();
    }
    words.join("_")
}

fn trend(
    times: impl Iterator<Item = Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
    window_days: u32,
) -> Option<Trend> {
    let back = |hours: i64| {
        Duration::try_hours(hours)
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let (half, start) = (
        back(i64::from(window_days) * 12),
        back(i64::from(window_days) * 24),
    );
    let (mut dated, mut recent, mut earlier) = (false, 0, 0);
    for at in times.flatten() {
        dated = true;
        if at > half {
            recent += 1;
        } else if at > start {
            earlier += 1;
        }
    }
    let moved = |a: usize, b: usize| a as f64 > 1.5 * b as f64 && a >= b + 2;
    let direction = if moved(recent, earlier) {
        Direction::Rising
    } else if moved(earlier, recent) {
        Direction::Falling
    } else {
        Direction::Steady
    };
    dated.then_some(Trend {
        window_days,
        recent,
        earlier,
        direction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_top_terms() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let said = t(&["human please", "talk to a human"]);
        assert_eq!(
            intent_name(&t(&["human", "talk", "agent"]), &said),
            "talk_human"
        );
        assert_eq!(
            intent_name(&t(&["store", "#", "nearest store"]), &[]),
            "store_nearest"
        );
        assert_eq!(intent_name(&[], &[]), "new_intent");
    }

    #[test]
    fn trend_compares_the_halves_of_the_window() {
        let now = DateTime::parse_from_rfc3339("2025-03-15T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let days = |d: &[i64]| {
            d.iter()
                .map(|&d| Some(now - Duration::days(d)))
                .collect::<Vec<_>>()
        };
        let t = trend(days(&[1, 2, 3, 3, 10]).into_iter(), now, 14).unwrap();
        assert_eq!(
            (t.recent, t.earlier, t.direction),
            (4, 1, Direction::Rising)
        );
        let t = trend(days(&[1, 10, 11, 30]).into_iter(), now, 14).unwrap();
        assert_eq!(
            (t.recent, t.earlier, t.direction),
            (1, 2, Direction::Steady)
        );
        assert_eq!(trend([None, None].into_iter(), now, 14), None);
        // A window longer than the calendar reaches its start.
        let t = trend(days(&[1, 4000]).into_iter(), now, u32::MAX).unwrap();
        assert_eq!((t.recent, t.earlier), (2, 0));
    }
}
