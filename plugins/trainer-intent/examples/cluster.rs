//! Make the word clusters the trainer ships (`data/word-clusters.bin`) from
//! its word vectors: `cluster <out file> [k] [iterations]`.
//!
//! k-means (cosine) over the vectors of the whole-word pieces of two
//! letters or more (`cancel`, not `##ling` or `x`), the centres started
//! from pieces evenly spaced in alphabetical order, so that the result
//! depends on nothing but the table. Every piece that can start a word
//! then goes to its nearest centre; continuations and the special pieces
//! get none.
//!
//! The shipped file came from
//! `cargo run --release -p trainer-intent --example cluster --
//! plugins/trainer-intent/data/word-clusters.bin 1024 10`.

use trainer_intent::word_clusters::WordClusters;
use trainer_intent::word_vectors;

fn nearest(centres: &[f32], d: usize, v: &[f32]) -> usize {
    let mut best = (f32::MIN, 0);
    for (c, row) in centres.chunks_exact(d).enumerate() {
        let s: f32 = row.iter().zip(v).map(|(a, b)| a * b).sum();
        if s > best.0 {
            best = (s, c);
        }
    }
    best.1
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: cluster <out file> [k] [iterations]");
        std::process::exit(2);
    };
    let k: usize = rest.first().map_or(1024, |v| v.parse().expect("k"));
    let iterations: usize = rest.get(1).map_or(10, |v| v.parse().expect("iterations"));
    let started = std::time::Instant::now();
    let table = word_vectors::shipped();
    let d = table.dims();
    let vector = |piece: u32| table.embed(&[piece], |_| 1.0);
    let mut words: Vec<(&str, u32)> = table
        .vocabulary()
        .filter(|(p, _)| p.len() >= 2 && p.chars().all(|c| c.is_ascii_lowercase()))
        .collect();
    words.sort();
    assert!(words.len() >= k, "{} words for {k} clusters", words.len());
    let rows: Vec<Vec<f32>> = words.iter().map(|&(_, i)| vector(i)).collect();
    let step = rows.len() / k;
    let mut centres: Vec<f32> = (0..k).flat_map(|c| rows[c * step].clone()).collect();
    for round in 1..=iterations {
        let mut sums = vec![0.0f32; k * d];
        for r in &rows {
            let c = nearest(&centres, d, r);
            for (s, x) in sums[c * d..(c + 1) * d].iter_mut().zip(r) {
                *s += x;
            }
        }
        for (centre, sum) in centres.chunks_exact_mut(d).zip(sums.chunks_exact(d)) {
            let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                for (c, s) in centre.iter_mut().zip(sum) {
                    *c = s / norm;
                }
            }
        }
        eprintln!(
            "round {round} of {iterations}, {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let mut ids = vec![None; table.len()];
    for (piece, i) in table.vocabulary() {
        let starts_word = !piece.starts_with("##") && !piece.starts_with('[');
        let v = vector(i);
        if starts_word && v.iter().any(|&x| x != 0.0) {
            ids[i as usize] = Some(nearest(&centres, d, &v) as u16);
        }
    }
    let source = format!(
        "k-means (cosine, {k} centres, {iterations} rounds) over the whole-word pieces of the word vectors {}; each piece that starts a word at its nearest centre",
        table.id()
    );
    let bytes = WordClusters::to_bytes(k, &ids, table.id(), &source);
    std::fs::write(out, &bytes).expect("write the clusters");
    eprintln!(
        "{} pieces in {k} clusters, {} bytes, {:.0} s",
        ids.iter().flatten().count(),
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
}
