//! Distil the static word vectors the trainer ships (`data/word-vectors.bin`)
//! from a sentence encoder: `distill <encoder folder> <out file> [dims]`.
//!
//! Every word piece of the encoder's vocabulary goes through the
//! transformer alone (`[CLS] piece [SEP]`, mean-pooled, unit length); the
//! table is then projected on its `dims` leading principal directions
//! (uncentred: the direction all pieces share is kept, it carries how
//! word-like a piece is) and quantised to 8 bits per row.
//!
//! The shipped table came from all-MiniLM-L6-v2 (Apache-2.0) with
//! `cargo run --release -p trainer-intent --example distill -- <folder>
//! plugins/trainer-intent/data/word-vectors.bin 128`.

use trainer_intent::encoder::Encoder;
use trainer_intent::word_vectors::WordVectors;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [folder, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: distill <encoder folder> <out file> [dims]");
        std::process::exit(2);
    };
    let k: usize = rest.first().map_or(128, |d| d.parse().expect("dims"));
    let started = std::time::Instant::now();
    let e = Encoder::from_folder(folder, |p| std::fs::read(p)).expect("encoder loads");
    let pieces = e.pieces();
    let h = e.dims();
    assert!(k <= h, "at most {h} dimensions");
    let ids: Vec<u32> = (0..pieces.len() as u32).collect();
    let mut rows: Vec<f32> = Vec::with_capacity(pieces.len() * h);
    for chunk in ids.chunks(2048) {
        for v in e.embed_pieces(chunk) {
            rows.extend(v);
        }
        eprintln!(
            "{} of {} pieces, {:.0} s",
            rows.len() / h,
            pieces.len(),
            started.elapsed().as_secs_f64()
        );
    }
    // The second-moment matrix and its leading eigenvectors.
    let mut m = vec![0.0f64; h * h];
    for row in rows.chunks_exact(h) {
        for i in 0..h {
            let a = row[i] as f64;
            for j in i..h {
                m[i * h + j] += a * row[j] as f64;
            }
        }
    }
    for i in 0..h {
        for j in 0..i {
            m[i * h + j] = m[j * h + i];
        }
    }
    let (values, vectors) = jacobi(m, h);
    let mut order: Vec<usize> = (0..h).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let total: f64 = values.iter().sum();
    let kept: f64 = order[..k].iter().map(|&i| values[i]).sum();
    eprintln!(
        "{k} directions keep {:.1}% of the energy",
        100.0 * kept / total
    );
    // Direction r is column order[r] of `vectors`, its sign fixed so that
    // its largest component is positive (the same table every run).
    let mut basis = vec![0.0f64; k * h];
    for (r, &c) in order[..k].iter().enumerate() {
        let col: Vec<f64> = (0..h).map(|i| vectors[i * h + c]).collect();
        let big = col
            .iter()
            .fold(0.0f64, |b, &v| if v.abs() > b.abs() { v } else { b });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        for i in 0..h {
            basis[r * h + i] = sign * col[i];
        }
    }
    let mut projected = Vec::with_capacity(pieces.len() * k);
    for row in rows.chunks_exact(h) {
        for b in basis.chunks_exact(h) {
            projected.push(b.iter().zip(row).map(|(b, &x)| b * x as f64).sum::<f64>() as f32);
        }
    }
    let name = std::path::Path::new(folder)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let source = format!(
        "{} word pieces of {name}, each alone through the encoder, mean-pooled; {k} leading principal directions (uncentred); 8 bits per row",
        pieces.len()
    );
    let bytes = WordVectors::to_bytes(&pieces, k, &projected, &source);
    std::fs::write(out, &bytes).expect("write the table");
    eprintln!(
        "wrote {} bytes in {:.0} s",
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Eigenvalues and eigenvectors (columns) of the symmetric `n × n` matrix
/// `a`, by cyclic Jacobi rotations.
fn jacobi(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-22 * diag {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}
