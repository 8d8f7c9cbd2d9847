//! Corrections when several metrics are tested at once: with five
//! metrics at 5% each, one looks significant by chance a quarter of the
//! time.

/// Holm's step-down adjusted p-values (controls the family-wise error
/// rate): sorted ascending, the k-th (from 0) times m − k, made
/// non-decreasing, capped at 1. Returned in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(p[i] * (m - k) as f64).min(1.0);
        out[i] = running;
    }
    out
}

/// Benjamini–Hochberg adjusted p-values (controls the false discovery
/// rate): sorted descending, the one of rank r (from m down) times m / r,
/// made non-increasing, capped at 1. Returned in the input's order.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 1.0;
    for (k, &i) in order.iter().enumerate() {
        let rank = (m - k) as f64;
        running = running.min(p[i] * m as f64 / rank);
        out[i] = running;
    }
    out
}
