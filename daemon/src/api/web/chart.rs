//! Charts drawn as SVG on the server: lines per epoch, sorted bars and a
//! heatmap. Each is an image with a title and a description, followed by
//! the same numbers as a table for screen readers and keyboard users.
//! Colours keep 3:1 contrast with the white background (WCAG 1.4.11).

use maud::{Markup, html};

const W: f64 = 640.0;
const PAD_L: f64 = 48.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 12.0;
const PAD_B: f64 = 28.0;
/// Series colours, each at least 3:1 against white.
const COLOURS: [&str; 4] = ["#0b5cad", "#b3261e", "#1a6b32", "#7a1f9e"];

/// One named series of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Lines over x (epochs), one per series.
pub fn lines(id: &str, title: &str, x_label: &str, series: &[Series]) -> Markup {
    let h = 220.0;
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        return html! { p.muted { (title) ": no values yet." } };
    }
    let (x0, x1) = bounds(all.iter().map(|p| p.0));
    let (mut y0, mut y1) = bounds(all.iter().map(|p| p.1));
    if y0 > 0.0 && y0 < (y1 - y0) {
        y0 = 0.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    let sx = |x: f64| PAD_L + (x - x0) / (x1 - x0).max(1e-9) * (W - PAD_L - PAD_R);
    let sy = |y: f64| PAD_T + (1.0 - (y - y0) / (y1 - y0)) * (h - PAD_T - PAD_B);
    let desc = series
        .iter()
        .map(|s| {
            let last = s.points.last().map(|p| fmt(p.1)).unwrap_or_default();
            format!("{}: {} points, last {}", s.name, s.points.len(), last)
        })
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure.chart id=(id) {
            svg viewBox={"0 0 " (W) " " (h)} role="img" aria-labelledby={(id) "-t " (id) "-d"} {
                title id={(id) "-t"} { (title) }
                desc id={(id) "-d"} { (desc) }
                line x1=(PAD_L) y1=(h - PAD_B) x2=(W - PAD_R) y2=(h - PAD_B) stroke="#6b7680" {}
                line x1=(PAD_L) y1=(PAD_T) x2=(PAD_L) y2=(h - PAD_B) stroke="#6b7680" {}
                @for v in [y0, (y0 + y1) / 2.0, y1] {
                    text x=(PAD_L - 4.0) y=(sy(v) + 4.0) text-anchor="end" { (fmt(v)) }
                    line x1=(PAD_L) y1=(sy(v)) x2=(W - PAD_R) y2=(sy(v)) stroke="#e1e5e9" {}
                }
                text x=(PAD_L) y=(h - 8.0) { (fmt(x0)) }
                text x=(W - PAD_R) y=(h - 8.0) text-anchor="end" { (fmt(x1)) }
                text x=((W + PAD_L) / 2.0) y=(h - 8.0) text-anchor="middle" { (x_label) }
                @for (i, s) in series.iter().enumerate() {
                    @let c = COLOURS[i % COLOURS.len()];
                    polyline fill="none" stroke=(c) stroke-width="2"
                        points=(s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect::<Vec<_>>().join(" ")) {}
                    @for &(x, y) in &s.points { circle cx=(format!("{:.1}", sx(x))) cy=(format!("{:.1}", sy(y))) r="2.5" fill=(c) {} }
                    text x=(W - PAD_R - 4.0) y=(PAD_T + 12.0 + 14.0 * i as f64) text-anchor="end" fill=(c) { (s.name) }
                }
            }
            figcaption { (title) }
            details {
                summary { "The numbers" }
                div.scroll tabindex="0" { table {
                    thead { tr { th { (x_label) } @for s in series { th.num { (s.name) } } } }
                    tbody {
                        @for x in xs(series) {
                            tr { td { (fmt(x)) } @for s in series {
                                td.num { (s.points.iter().find(|p| p.0 == x).map(|p| fmt(p.1)).unwrap_or_default()) }
                            } }
                        }
                    }
                } }
            }
        }
    }
}

fn xs(series: &[Series]) -> Vec<f64> {
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        })
}

/// Horizontal bars of signed values (changes), largest first: gains to the
/// right in blue, losses to the left in red.
pub fn bars(id: &str, title: &str, unit: &str, rows: &[(String, f64)]) -> Markup {
    if rows.is_empty() {
        return html! { p.muted { (title) ": nothing to show." } };
    }
    let row_h = 18.0;
    let label_w = 180.0;
    let h = PAD_T + row_h * rows.len() as f64 + 8.0;
    let max = rows.iter().map(|r| r.1.abs()).fold(1e-9, f64::max);
    let mid = label_w + (W - label_w - PAD_R) / 2.0;
    let half = (W - label_w - PAD_R) / 2.0 - 40.0;
    html! {
        figure.chart id=(id) {
            svg viewBox={"0 0 " (W) " " (h)} role="img" aria-labelledby={(id) "-t " (id) "-d"} {
                title id={(id) "-t"} { (title) }
                desc id={(id) "-d"} { (rows.len()) " rows; largest " (rows[0].0) " " (fmt(rows[0].1)) (unit) }
                line x1=(mid) y1=(PAD_T - 4.0) x2=(mid) y2=(h - 4.0) stroke="#6b7680" {}
                @for (i, (label, v)) in rows.iter().enumerate() {
                    @let y = PAD_T + row_h * i as f64;
                    @let w = v.abs() / max * half;
                    @let x = if *v >= 0.0 { mid } else { mid - w };
                    text x=(label_w - 6.0) y=(y + 12.0) text-anchor="end" { (truncate(label, 26)) }
                    rect x=(format!("{x:.1}")) y=(y + 2.0) width=(format!("{:.1}", w.max(1.0))) height=(row_h - 5.0)
                        fill=(if *v >= 0.0 { "#0b5cad" } else { "#b3261e" }) {}
                    text x=(if *v >= 0.0 { mid + w + 4.0 } else { mid - w - 4.0 }) y=(y + 12.0)
                        text-anchor=(if *v >= 0.0 { "start" } else { "end" }) { (signed(*v)) (unit) }
                }
            }
            figcaption { (title) }
            details {
                summary { "The numbers" }
                div.scroll tabindex="0" { table {
                    thead { tr { th { "name" } th.num { "change" } } }
                    tbody { @for (label, v) in rows { tr { td { (label) } td.num { (signed(*v)) (unit) } } } }
                } }
            }
        }
    }
}

fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", fmt(v))
    } else {
        fmt(v)
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// A heatmap of counts: rows are truths, columns predictions.
pub fn heatmap(
    id: &str,
    title: &str,
    labels: &[String],
    cell: impl Fn(usize, usize) -> u64,
) -> Markup {
    if labels.is_empty() {
        return html! { p.muted { (title) ": nothing to show." } };
    }
    let n = labels.len();
    let label_w = 150.0;
    let size = ((W - label_w - PAD_R) / n as f64).min(36.0);
    let top = 110.0;
    let h = top + size * n as f64 + 8.0;
    let max = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| cell(i, j))
        .max()
        .unwrap_or(1)
        .max(1);
    html! {
        figure.chart id=(id) {
            svg viewBox={"0 0 " (W) " " (h)} role="img" aria-labelledby={(id) "-t " (id) "-d"} {
                title id={(id) "-t"} { (title) }
                desc id={(id) "-d"} { (n) " intents; rows are the true intent, columns the predicted one" }
                @for (j, l) in labels.iter().enumerate() {
                    text transform=(format!("translate({:.1},{:.1}) rotate(-55)", label_w + size * (j as f64 + 0.5), top - 4.0)) { (truncate(l, 18)) }
                }
                @for (i, l) in labels.iter().enumerate() {
                    text x=(label_w - 6.0) y=(top + size * (i as f64 + 0.65)) text-anchor="end" { (truncate(l, 22)) }
                    @for j in 0..n {
                        @let v = cell(i, j);
                        @let shade = 250.0 - 200.0 * (v as f64 / max as f64);
                        rect x=(format!("{:.1}", label_w + size * j as f64)) y=(format!("{:.1}", top + size * i as f64))
                            width=(format!("{:.1}", size - 1.0)) height=(format!("{:.1}", size - 1.0))
                            fill=(format!("rgb({:.0},{:.0},255)", shade, shade)) stroke="#d0d5da" {
                            title { (labels[i]) " → " (labels[j]) ": " (v) }
                        }
                        @if v > 0 {
                            text x=(format!("{:.1}", label_w + size * (j as f64 + 0.5))) y=(format!("{:.1}", top + size * (i as f64 + 0.65)))
                                text-anchor="middle" fill=(if shade < 140.0 { "#ffffff" } else { "#1b1f23" }) { (v) }
                        }
                    }
                }
            }
            figcaption { (title) }
            details {
                summary { "The numbers" }
                div.scroll tabindex="0" { table {
                    thead { tr { th { "true intent" } th { "predicted" } th.num { "count" } } }
                    tbody {
                        @for i in 0..n { @for j in 0..n { @let v = cell(i, j); @if v > 0 && i != j {
                            tr { td { (labels[i]) } td { (labels[j]) } td.num { (v) } }
                        } } }
                    }
                } }
            }
        }
    }
}

/// Counts as one stacked bar (runs by state), with a legend that names
/// every part.
pub fn stacked(id: &str, title: &str, parts: &[(&str, u64, &str)]) -> Markup {
    let total: u64 = parts.iter().map(|p| p.1).sum();
    let h = 28.0;
    let mut x = 0.0;
    let placed: Vec<(&str, u64, &str, f64, f64)> = parts
        .iter()
        .map(|&(name, n, colour)| {
            let w = if total == 0 {
                0.0
            } else {
                n as f64 / total as f64 * W
            };
            x += w;
            (name, n, colour, x - w, w)
        })
        .collect();
    html! {
        figure.chart id=(id) {
            svg viewBox={"0 0 " (W) " " (h)} role="img" aria-labelledby={(id) "-t " (id) "-d"} {
                title id={(id) "-t"} { (title) }
                desc id={(id) "-d"} { (parts.iter().map(|p| format!("{} {}", p.1, p.0)).collect::<Vec<_>>().join(", ")) }
                @for (name, n, colour, x, w) in &placed {
                    rect x=(format!("{x:.1}")) y="0" width=(format!("{w:.1}")) height=(h) fill=(colour) { title { (n) " " (name) } }
                }
            }
        }
    }
}

/// One row of a forest plot: an estimate and its interval.
pub struct Interval {
    pub label: String,
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
}

/// A forest plot: each row's estimate as a dot with its interval as a
/// line, around a vertical line at zero (no difference). Rows whose
/// interval leaves zero are drawn solid; the others hollow.
pub fn forest(id: &str, title: &str, unit: &str, rows: &[Interval]) -> Markup {
    if rows.is_empty() {
        return html! { p.muted { (title) ": no estimate yet." } };
    }
    let row_h = 26.0;
    let label_w = 220.0;
    let h = PAD_T + row_h * rows.len() as f64 + PAD_B;
    let (lo, hi) = bounds(rows.iter().flat_map(|r| [r.lo, r.hi, r.estimate, 0.0]));
    let span = (hi - lo).max(1e-9) * 1.1;
    let (lo, hi) = ((lo + hi) / 2.0 - span / 2.0, (lo + hi) / 2.0 + span / 2.0);
    let sx = |v: f64| label_w + (v - lo) / (hi - lo) * (W - label_w - PAD_R);
    let clear = |r: &Interval| r.lo > 0.0 || r.hi < 0.0;
    html! {
        figure.chart id=(id) {
            svg viewBox={"0 0 " (W) " " (h)} role="img" aria-labelledby={(id) "-t " (id) "-d"} {
                title id={(id) "-t"} { (title) }
                desc id={(id) "-d"} {
                    (rows.iter().map(|r| format!("{}: {}{unit} ({} to {})", r.label, signed(r.estimate), signed(r.lo), signed(r.hi))).collect::<Vec<_>>().join("; "))
                }
                line x1=(format!("{:.1}", sx(0.0))) y1=(PAD_T - 6.0) x2=(format!("{:.1}", sx(0.0))) y2=(h - PAD_B + 4.0) stroke="#6b7680" stroke-dasharray="4 3" {}
                text x=(format!("{:.1}", sx(0.0))) y=(h - 8.0) text-anchor="middle" { "0 (no difference)" }
                text x=(label_w) y=(h - 8.0) { (signed(lo)) }
                text x=(W - PAD_R) y=(h - 8.0) text-anchor="end" { (signed(hi)) }
                @for (i, r) in rows.iter().enumerate() {
                    @let y = PAD_T + row_h * i as f64 + row_h / 2.0;
                    @let c = if !clear(r) { "#5b6b7a" } else if r.estimate >= 0.0 { "#0b5cad" } else { "#b3261e" };
                    text x=(label_w - 8.0) y=(y + 4.0) text-anchor="end" { (truncate(&r.label, 30)) }
                    line x1=(format!("{:.1}", sx(r.lo))) y1=(y) x2=(format!("{:.1}", sx(r.hi))) y2=(y) stroke=(c) stroke-width="2" {}
                    circle cx=(format!("{:.1}", sx(r.estimate))) cy=(y) r="5" stroke=(c) stroke-width="2"
                        fill=(if clear(r) { c } else { "#ffffff" }) {}
                }
            }
            figcaption { (title) }
            details {
                summary { "The numbers" }
                div.scroll tabindex="0" { table {
                    thead { tr { th { "comparison" } th.num { "estimate" } th.num { "interval" } } }
                    tbody { @for r in rows { tr {
                        td { (r.label) } td.num { (signed(r.estimate)) (unit) } td.num { (signed(r.lo)) " to " (signed(r.hi)) }
                    } } }
                } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_carry_a_title_a_description_and_their_numbers() {
        let s = [Series {
            name: "loss",
            points: vec![(1.0, 0.9), (2.0, 0.5)],
        }];
        let svg = lines("c", "Loss <per> epoch", "epoch", &s).into_string();
        assert!(svg.contains("<title id=\"c-t\">Loss &lt;per&gt; epoch</title>"));
        assert!(svg.contains("<desc") && svg.contains("<table>"));
        let b = bars(
            "b",
            "F1 change",
            " pts",
            &[("a".into(), 2.0), ("b".into(), -1.0)],
        )
        .into_string();
        assert!(b.contains("+2.00") && b.contains("-1.00"));
        let m = heatmap("h", "Confusions", &["x".into(), "y".into()], |i, j| {
            (i * 2 + j) as u64
        })
        .into_string();
        assert!(m.contains("x → y: 1"));
        let rows = [Interval {
            label: "b: conversion".into(),
            estimate: 0.02,
            lo: 0.01,
            hi: 0.03,
        }];
        let f = forest("f", "Effects", "", &rows).into_string();
        assert!(
            f.contains("b: conversion: +0.020 (+0.010 to +0.030)"),
            "{f}"
        );
    }
}
