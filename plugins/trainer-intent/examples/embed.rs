//! Print the sentence embedding of each argument with the encoder in the
//! folder named by the first: `embed <folder> "text" …` (first 6
//! dimensions, then the cosine of every pair).

use trainer_intent::encoder::Encoder;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = std::time::Instant::now();
    let e = Encoder::from_folder(&args[0], |p| std::fs::read(p)).expect("encoder loads");
    eprintln!("loaded in {:.2} s", started.elapsed().as_secs_f64());
    let texts = &args[1..];
    let vs: Vec<Vec<f32>> = texts.iter().map(|t| e.embed(t)).collect();
    for (t, v) in texts.iter().zip(&vs) {
        println!("{t:?} {:?} {:?}", e.tokenize(t), &v[..6]);
    }
    for i in 0..vs.len() {
        for j in i + 1..vs.len() {
            let c: f32 = vs[i].iter().zip(&vs[j]).map(|(a, b)| a * b).sum();
            println!("cos({i},{j}) = {c:.4}");
        }
    }
    let n = 400;
    let texts: Vec<String> = (0..n)
        .map(|k| format!("how do I reset my password for account {k}"))
        .collect();
    let started = std::time::Instant::now();
    for t in &texts[..50] {
        e.forget();
        std::hint::black_box(e.embed(t));
    }
    println!(
        "one at a time: {:.1} embeddings/s",
        50.0 / started.elapsed().as_secs_f64()
    );
    e.forget();
    let started = std::time::Instant::now();
    e.prepare(texts.iter().map(String::as_str));
    println!(
        "in batches: {:.1} embeddings/s",
        n as f64 / started.elapsed().as_secs_f64()
    );
    let batched = e.embed(&texts[7]);
    e.forget();
    let single = e.embed(&texts[7]);
    let diff = batched
        .iter()
        .zip(&single)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("largest difference batched vs alone: {diff:e}");
}
