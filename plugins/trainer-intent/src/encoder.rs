//! A pretrained sentence encoder: a BERT-style transformer (for example
//! sentence-transformers' all-MiniLM-L6-v2) run on CPU inside the sandbox,
//! whose mean-pooled, L2-normalised output joins the n-gram features.
//!
//! The weights come from a folder the operator grants (`model.safetensors`,
//! `vocab.txt`, `config.json`, as the sentence-transformers packages ship
//! them); nothing is downloaded. A model trained with an encoder carries it
//! in its own bytes (weight matrices quantised to 8 bits per row, which
//! also happens on loading, so training and prediction see the same
//! weights): a registered model predicts without the folder.

use coach_plugin_sdk::PluginError;
use std::collections::HashMap;
use std::sync::Mutex;
use unicode_normalization::UnicodeNormalization;

/// Tokens per text, `[CLS]` and `[SEP]` included; longer texts are cut.
pub const MAX_TOKENS: usize = 128;

/// The largest encoder accepted (parameters), so that a hostile file
/// cannot make the trainer allocate without bound.
const MAX_PARAMETERS: usize = 200_000_000;

/// Texts whose embeddings are remembered (training featurises the same
/// texts more than once).
const CACHE_ENTRIES: usize = 60_000;

/// Tokens embedded together by [`Encoder::prepare`].
const BATCH_TOKENS: usize = 512;

const MAGIC: &[u8; 8] = b"COACHEN1";

/// The transformer's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub positions: usize,
    pub vocab: usize,
    pub layer_norm_eps: f32,
}

/// A linear layer, its weights transposed to `in × out` (PyTorch stores
/// `out × in`): a token's outputs then grow by one input's row at a time,
/// a plain vector multiply-add.
struct Linear {
    wt: Vec<f32>,
    b: Vec<f32>,
    inputs: usize,
}

struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
}

/// A loaded encoder.
pub struct Encoder {
    shape: Shape,
    index: HashMap<String, u32>,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    norm: Norm,
    layers: Vec<Layer>,
    /// The serialised form (what [`Encoder::to_bytes`] returns).
    bytes: Vec<u8>,
    cache: Mutex<HashMap<String, Vec<f32>>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("shape", &self.shape)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl PartialEq for Encoder {
    fn eq(&self, other: &Encoder) -> bool {
        self.bytes == other.bytes
    }
}

fn bad(what: impl std::fmt::Display) -> PluginError {
    PluginError::bad_data(format!("sentence encoder: {what}"))
}

/// Tensors by name: dtype, shape, bytes.
type Tensors<'a> = HashMap<String, (String, Vec<usize>, &'a [u8])>;

fn safetensors(bytes: &[u8]) -> Result<Tensors<'_>, PluginError> {
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| bad("model.safetensors is shorter than its header"))?;
    let end = 8usize
        .checked_add(usize::try_from(len).map_err(|_| bad("header too long"))?)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("model.safetensors: truncated header"))?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..end])
        .map_err(|e| bad(format!("model.safetensors header: {e}")))?;
    let data = &bytes[end..];
    let mut out = HashMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v["dtype"].as_str().unwrap_or_default().to_owned();
        let shape: Vec<usize> = v["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64())
                    .map(|d| d as usize)
                    .collect()
            })
            .unwrap_or_default();
        let offsets = v["data_offsets"].as_array();
        let (Some(a), Some(b)) = (
            offsets.and_then(|o| o.first()?.as_u64()),
            offsets.and_then(|o| o.get(1)?.as_u64()),
        ) else {
            return Err(bad(format!("tensor `{name}` has no data offsets")));
        };
        let (a, b) = (a as usize, b as usize);
        if a > b || b > data.len() {
            return Err(bad(format!("tensor `{name}` lies outside the file")));
        }
        out.insert(name, (dtype, shape, &data[a..b]));
    }
    Ok(out)
}

/// Quantise each row of `w` (`rows × cols`) to 8 bits with its own scale;
/// returns the scales and the codes.
pub(crate) fn quantise(w: &[f32], cols: usize) -> (Vec<f32>, Vec<i8>) {
    let mut scales = Vec::with_capacity(w.len() / cols.max(1));
    let mut codes = Vec::with_capacity(w.len());
    for row in w.chunks_exact(cols) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(scale);
        codes.extend(
            row.iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (scales, codes)
}

fn dequantise(scales: &[f32], codes: &[i8], cols: usize) -> Vec<f32> {
    codes
        .chunks_exact(cols)
        .zip(scales)
        .flat_map(|(row, &s)| row.iter().map(move |&c| c as f32 * s))
        .collect()
}

/// Writes the serialised encoder: header JSON, then every tensor in a
/// fixed order (matrices quantised, vectors as f32).
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn matrix(&mut self, w: &[f32], cols: usize) {
        let (scales, codes) = quantise(w, cols);
        for s in scales {
            self.out.extend_from_slice(&s.to_le_bytes());
        }
        self.out.extend(codes.iter().map(|&c| c as u8));
    }

    fn vector(&mut self, v: &[f32]) {
        for x in v {
            self.out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Reads what [`Writer`] wrote.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PluginError> {
        if self.rest.len() < n {
            return Err(bad("truncated weights"));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f32>, PluginError> {
        let v: Vec<f32> = self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(bad("a weight is not a finite number"));
        }
        Ok(v)
    }

    fn matrix(&mut self, rows: usize, cols: usize) -> Result<Vec<f32>, PluginError> {
        let scales = self.floats(rows)?;
        let codes: Vec<i8> = self.take(rows * cols)?.iter().map(|&b| b as i8).collect();
        Ok(dequantise(&scales, &codes, cols))
    }
}

/// Where each tensor of a layer sits, and its shape as `(rows, cols)`
/// (`cols` 0 for a vector).
fn layer_tensors(s: &Shape) -> [(&'static str, usize, usize); 16] {
    let (h, i) = (s.hidden, s.intermediate);
    [
        ("attention.self.query.weight", h, h),
        ("attention.self.query.bias", h, 0),
        ("attention.self.key.weight", h, h),
        ("attention.self.key.bias", h, 0),
        ("attention.self.value.weight", h, h),
        ("attention.self.value.bias", h, 0),
        ("attention.output.dense.weight", h, h),
        ("attention.output.dense.bias", h, 0),
        ("attention.output.LayerNorm.weight", h, 0),
        ("attention.output.LayerNorm.bias", h, 0),
        ("intermediate.dense.weight", i, h),
        ("intermediate.dense.bias", i, 0),
        ("output.dense.weight", h, i),
        ("output.dense.bias", h, 0),
        ("output.LayerNorm.weight", h, 0),
        ("output.LayerNorm.bias", h, 0),
    ]
}

fn embedding_tensors(s: &Shape) -> [(&'static str, usize, usize); 5] {
    [
        ("embeddings.word_embeddings.weight", s.vocab, s.hidden),
        (
            "embeddings.position_embeddings.weight",
            s.positions,
            s.hidden,
        ),
        ("embeddings.token_type_embeddings.weight", 1, s.hidden),
        ("embeddings.LayerNorm.weight", s.hidden, 0),
        ("embeddings.LayerNorm.bias", s.hidden, 0),
    ]
}

impl Encoder {
    /// Load from a folder holding `model.safetensors`, `vocab.txt` and
    /// `config.json` (or the path of the `model.safetensors` in it); `read`
    /// reads a file's bytes.
    pub fn from_folder(
        path: &str,
        read: impl Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Result<Encoder, PluginError> {
        let folder = path
            .strip_suffix("/model.safetensors")
            .unwrap_or(path.trim_end_matches('/'));
        let file = |name: &str| {
            let p = format!("{folder}/{name}");
            read(&p).map_err(|e| bad(format!("cannot read {p}: {e}")))
        };
        let config: serde_json::Value = serde_json::from_slice(&file("config.json")?)
            .map_err(|e| bad(format!("{folder}/config.json: {e}")))?;
        let num = |key: &str| {
            config[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("{folder}/config.json has no `{key}`")))
        };
        let shape = Shape {
            layers: num("num_hidden_layers")?,
            hidden: num("hidden_size")?,
            heads: num("num_attention_heads")?,
            intermediate: num("intermediate_size")?,
            positions: num("max_position_embeddings")?,
            vocab: num("vocab_size")?,
            layer_norm_eps: config["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
        };
        if config["hidden_act"].as_str().is_some_and(|a| a != "gelu") {
            return Err(bad(format!(
                "activation `{}`: only BERT's `gelu` is supported",
                config["hidden_act"]
            )));
        }
        check_shape(&shape)?;
        // Positions past the longest text are never used.
        let shape = Shape {
            positions: MAX_TOKENS,
            ..shape
        };
        let vocab = String::from_utf8(file("vocab.txt")?)
            .map_err(|_| bad(format!("{folder}/vocab.txt is not UTF-8")))?;
        let pieces: Vec<String> = vocab.lines().map(str::to_owned).collect();
        let weights = file("model.safetensors")?;
        let tensors = safetensors(&weights)?;
        let mut w = Writer { out: Vec::new() };
        let mut put = |name: String, rows: usize, cols: usize| -> Result<(), PluginError> {
            let key = tensors
                .keys()
                .filter(|k| {
                    k.ends_with(&name)
                        && (k.len() == name.len() || k[..k.len() - name.len()].ends_with('.'))
                })
                .min_by_key(|k| k.len())
                .ok_or_else(|| bad(format!("model.safetensors has no tensor `{name}`")))?;
            let (dtype, dims, data) = &tensors[key];
            if dtype != "F32" {
                return Err(bad(format!("tensor `{key}` is {dtype}; F32 is supported")));
            }
            let n = rows * cols.max(1);
            // The token type table may have more rows than the one used.
            let fits = dims.iter().product::<usize>() >= n
                && dims.last().copied() == Some(if cols == 0 { rows } else { cols });
            if !fits || data.len() < n * 4 {
                return Err(bad(format!(
                    "tensor `{key}` has shape {dims:?}; expected {}",
                    if cols == 0 {
                        format!("[{rows}]")
                    } else {
                        format!("[{rows}, {cols}]")
                    }
                )));
            }
            let v: Vec<f32> = data[..n * 4]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "tensor `{key}` holds a value that is not finite"
                )));
            }
            if cols == 0 {
                w.vector(&v);
            } else {
                w.matrix(&v, cols);
            }
            Ok(())
        };
        for (name, rows, cols) in embedding_tensors(&shape) {
            put(name.to_owned(), rows, cols)?;
        }
        for l in 0..shape.layers {
            for (name, rows, cols) in layer_tensors(&shape) {
                put(format!("encoder.layer.{l}.{name}"), rows, cols)?;
            }
        }
        let tensors_bytes = w.out;
        Encoder::assemble(shape, pieces, &tensors_bytes)
    }

    /// Serialise: magic, header length, header JSON (shape and vocabulary),
    /// tensors.
    fn assemble(shape: Shape, pieces: Vec<String>, tensors: &[u8]) -> Result<Encoder, PluginError> {
        let header = serde_json::to_vec(&serde_json::json!({ "shape": shape, "vocab": pieces }))
            .expect("header serialises");
        let mut bytes = Vec::with_capacity(12 + header.len() + tensors.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(tensors);
        Encoder::from_bytes(&bytes)
    }

    /// Read what [`Encoder::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Encoder, PluginError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(bad("missing header"));
        }
        let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let end = 12usize
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad("truncated header"))?;
        #[derive(serde::Deserialize)]
        struct Header {
            shape: Shape,
            vocab: Vec<String>,
        }
        let h: Header =
            serde_json::from_slice(&bytes[12..end]).map_err(|e| bad(format!("header: {e}")))?;
        let shape = h.shape;
        check_shape(&shape)?;
        if h.vocab.len() != shape.vocab {
            return Err(bad(format!(
                "vocab.txt has {} word pieces; the model has {}",
                h.vocab.len(),
                shape.vocab
            )));
        }
        for special in ["[CLS]", "[SEP]", "[UNK]"] {
            if !h.vocab.iter().any(|p| p == special) {
                return Err(bad(format!("vocab.txt has no `{special}`")));
            }
        }
        let mut r = Reader {
            rest: &bytes[end..],
        };
        let mut next = |rows: usize, cols: usize| {
            if cols == 0 {
                r.floats(rows)
            } else {
                r.matrix(rows, cols)
            }
        };
        let mut emb = embedding_tensors(&shape).map(|_| Vec::new());
        for (slot, (_, rows, cols)) in emb.iter_mut().zip(embedding_tensors(&shape)) {
            *slot = next(rows, cols)?;
        }
        let [word, position, token_type, g, b] = emb;
        let mut layers = Vec::with_capacity(shape.layers);
        for _ in 0..shape.layers {
            let mut t = Vec::with_capacity(16);
            for (_, rows, cols) in layer_tensors(&shape) {
                t.push(next(rows, cols)?);
            }
            let mut t = t.into_iter();
            let mut linear = |inputs: usize| {
                let w = t.next().expect("16 tensors");
                let b = t.next().expect("16 tensors");
                Linear {
                    wt: if inputs == 0 {
                        w
                    } else {
                        transpose(&w, inputs)
                    },
                    b,
                    inputs,
                }
            };
            let (h, i) = (shape.hidden, shape.intermediate);
            let (q, k, v, out) = (linear(h), linear(h), linear(h), linear(h));
            let n1 = linear(0);
            let (up, down) = (linear(h), linear(i));
            let n2 = linear(0);
            layers.push(Layer {
                q,
                k,
                v,
                out,
                norm1: Norm { g: n1.wt, b: n1.b },
                up,
                down,
                norm2: Norm { g: n2.wt, b: n2.b },
            });
        }
        if !r.rest.is_empty() {
            return Err(bad(format!("{} bytes after the weights", r.rest.len())));
        }
        let index = h
            .vocab
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        Ok(Encoder {
            shape,
            index,
            word,
            position,
            token_type,
            norm: Norm { g, b },
            layers,
            bytes: bytes.to_vec(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Dimensions of an embedding.
    pub fn dims(&self) -> usize {
        self.shape.hidden
    }

    /// Word-piece ids of `text`, as BERT's uncased tokenizer cuts it:
    /// `[CLS]`, the pieces, `[SEP]`, at most [`MAX_TOKENS`].
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let id = |p: &str| self.index.get(p).copied();
        let unk = id("[UNK]").expect("checked at load");
        let mut ids = vec![id("[CLS]").expect("checked at load")];
        for word in basic_words(text) {
            if ids.len() >= MAX_TOKENS - 1 {
                break;
            }
            word_pieces(&word, &self.index, unk, &mut ids);
        }
        ids.truncate(MAX_TOKENS - 1);
        ids.push(id("[SEP]").expect("checked at load"));
        ids
    }

    /// The sentence embedding of `text`: mean of the last layer's token
    /// states, L2-normalised.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        if let Some(e) = self.cache.lock().ok().and_then(|c| c.get(text).cloned()) {
            return e;
        }
        let e = self
            .forward(&[self.tokenize(text)])
            .pop()
            .expect("one text, one embedding");
        self.remember([(text, &e)]);
        e
    }

    /// The vocabulary's word pieces, in id order.
    pub fn pieces(&self) -> Vec<String> {
        let mut pieces = vec![String::new(); self.index.len()];
        for (p, &id) in &self.index {
            pieces[id as usize] = p.clone();
        }
        pieces
    }

    /// The embedding of each of `pieces` alone (`[CLS] piece [SEP]`), as
    /// [`Encoder::embed`] would give it: what the static word vectors are
    /// distilled from.
    pub fn embed_pieces(&self, pieces: &[u32]) -> Vec<Vec<f32>> {
        let id = |p: &str| self.index[p];
        let (cls, sep) = (id("[CLS]"), id("[SEP]"));
        let texts: Vec<Vec<u32>> = pieces.iter().map(|&p| vec![cls, p, sep]).collect();
        texts
            .chunks(BATCH_TOKENS / 3)
            .flat_map(|batch| self.forward(batch))
            .collect()
    }

    /// Embed `texts` ahead of [`Encoder::embed`] (each distinct text once),
    /// several texts per pass through the layers.
    pub fn prepare<'a>(&self, texts: impl IntoIterator<Item = &'a str>) {
        let mut todo: Vec<&str> = {
            let cache = self.cache.lock().ok();
            texts
                .into_iter()
                .filter(|t| cache.as_ref().is_none_or(|c| !c.contains_key(*t)))
                .collect()
        };
        todo.sort_unstable();
        todo.dedup();
        let mut batch: Vec<(&str, Vec<u32>)> = Vec::new();
        let mut tokens = 0;
        let flush = |batch: &mut Vec<(&str, Vec<u32>)>| {
            let ids: Vec<Vec<u32>> = batch.iter().map(|(_, ids)| ids.clone()).collect();
            let out = self.forward(&ids);
            self.remember(batch.iter().map(|(t, _)| *t).zip(out.iter()));
            batch.clear();
        };
        for t in todo {
            let ids = self.tokenize(t);
            tokens += ids.len();
            batch.push((t, ids));
            if tokens >= BATCH_TOKENS {
                flush(&mut batch);
                tokens = 0;
            }
        }
        if !batch.is_empty() {
            flush(&mut batch);
        }
    }

    /// How many more embeddings the cache keeps: [`Encoder::prepare`]
    /// of more than that embeds the rest for nothing.
    pub fn room(&self) -> usize {
        self.cache
            .lock()
            .map_or(0, |c| CACHE_ENTRIES.saturating_sub(c.len()))
    }

    fn remember<'a>(&self, items: impl IntoIterator<Item = (&'a str, &'a Vec<f32>)>) {
        if let Ok(mut c) = self.cache.lock() {
            for (t, e) in items {
                if c.len() >= CACHE_ENTRIES {
                    break;
                }
                c.insert(t.to_owned(), e.clone());
            }
        }
    }

    /// Forget remembered embeddings.
    pub fn forget(&self) {
        if let Ok(mut c) = self.cache.lock() {
            *c = HashMap::new();
        }
    }

    /// The embeddings of several tokenised texts, run through the layers
    /// together (attention stays within each text).
    fn forward(&self, texts: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let s = &self.shape;
        let h = s.hidden;
        let n: usize = texts.iter().map(Vec::len).sum();
        let mut spans = Vec::with_capacity(texts.len());
        let mut x = vec![0.0f32; n * h];
        let mut row = 0;
        for ids in texts {
            spans.push(row..row + ids.len());
            for (t, &id) in ids.iter().enumerate() {
                let w = &self.word[id as usize * h..(id as usize + 1) * h];
                let p = &self.position[t * h..(t + 1) * h];
                for (j, out) in x[row * h..(row + 1) * h].iter_mut().enumerate() {
                    *out = w[j] + p[j] + self.token_type[j];
                }
                row += 1;
            }
        }
        layer_norm(&mut x, h, &self.norm, s.layer_norm_eps);
        let heads = s.heads;
        let dh = h / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut scores = Vec::new();
        for l in &self.layers {
            let q = l.q.apply(&x, n);
            let k = l.k.apply(&x, n);
            let v = l.v.apply(&x, n);
            let mut ctx = vec![0.0f32; n * h];
            for span in &spans {
                scores.resize(span.len(), 0.0);
                for head in 0..heads {
                    let o = head * dh;
                    for i in span.clone() {
                        let qi = &q[i * h + o..i * h + o + dh];
                        let mut max = f32::NEG_INFINITY;
                        for (j, sc) in span.clone().zip(scores.iter_mut()) {
                            *sc = dot(qi, &k[j * h + o..j * h + o + dh]) * scale;
                            max = max.max(*sc);
                        }
                        let mut sum = 0.0;
                        for sc in scores.iter_mut() {
                            *sc = (*sc - max).exp();
                            sum += *sc;
                        }
                        let out = &mut ctx[i * h + o..i * h + o + dh];
                        for (j, &p) in span.clone().zip(scores.iter()) {
                            let p = p / sum;
                            for (c, &vv) in out.iter_mut().zip(&v[j * h + o..j * h + o + dh]) {
                                *c += p * vv;
                            }
                        }
                    }
                }
            }
            let mut a = l.out.apply(&ctx, n);
            a.iter_mut().zip(&x).for_each(|(a, x)| *a += x);
            layer_norm(&mut a, h, &l.norm1, s.layer_norm_eps);
            let mut u = l.up.apply(&a, n);
            u.iter_mut().for_each(|v| *v = gelu(*v));
            let mut d = l.down.apply(&u, n);
            d.iter_mut().zip(&a).for_each(|(d, a)| *d += a);
            layer_norm(&mut d, h, &l.norm2, s.layer_norm_eps);
            x = d;
        }
        spans
            .into_iter()
            .map(|span| {
                let mut e = vec![0.0f32; h];
                for row in x[span.start * h..span.end * h].chunks_exact(h) {
                    e.iter_mut().zip(row).for_each(|(e, v)| *e += v);
                }
                let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                e.iter_mut().for_each(|v| *v /= norm);
                e
            })
            .collect()
    }
}

fn check_shape(s: &Shape) -> Result<(), PluginError> {
    // In u128, so that no dimensions a file can claim overflow.
    let [l, h, i, p, v] =
        [s.layers, s.hidden, s.intermediate, s.positions, s.vocab].map(|d| d as u128);
    let parameters = (v + p) * h + l * (4 * h * h + 2 * h * i);
    if s.layers == 0
        || s.hidden == 0
        || s.heads == 0
        || !s.hidden.is_multiple_of(s.heads)
        || s.intermediate == 0
        || s.positions < MAX_TOKENS
        || s.vocab == 0
        || parameters > MAX_PARAMETERS as u128
        || !(s.layer_norm_eps.is_finite() && s.layer_norm_eps > 0.0)
    {
        return Err(bad(format!(
            "unsupported dimensions {s:?} (at most {MAX_PARAMETERS} parameters, at least {MAX_TOKENS} positions, heads dividing the hidden size)"
        )));
    }
    Ok(())
}

impl Linear {
    /// `x` (`n × inputs`) times the weights, plus the bias. Four tokens at
    /// a time, so that each row of the weights is read once for four.
    fn apply(&self, x: &[f32], n: usize) -> Vec<f32> {
        let (inputs, outputs) = (self.inputs, self.b.len());
        let mut y: Vec<f32> = Vec::with_capacity(n * outputs);
        for _ in 0..n {
            y.extend_from_slice(&self.b);
        }
        for (xs, ys) in x.chunks(4 * inputs).zip(y.chunks_mut(4 * outputs)) {
            let tokens = xs.len() / inputs;
            for (i, w) in self.wt.chunks_exact(outputs).enumerate() {
                for (k, yk) in ys.chunks_exact_mut(outputs).enumerate().take(tokens) {
                    axpy(xs[k * inputs + i], w, yk);
                }
            }
        }
        y
    }
}

/// `y += s · w`, sixteen lanes a step (four vector multiply-adds, and one
/// loop test and interruption check for all four).
fn axpy(s: f32, w: &[f32], y: &mut [f32]) {
    let mut ys = y.chunks_exact_mut(16);
    let mut ws = w.chunks_exact(16);
    for (yy, ww) in (&mut ys).zip(&mut ws) {
        for i in 0..16 {
            yy[i] += s * ww[i];
        }
    }
    for (yo, wo) in ys.into_remainder().iter_mut().zip(ws.remainder()) {
        *yo += s * wo;
    }
}

/// `rows × cols` to `cols × rows`.
fn transpose(w: &[f32], cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let mut t = vec![0.0f32; w.len()];
    for (r, row) in w.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// A dot product in eight lanes (vectorised by the compiler).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn layer_norm(x: &mut [f32], h: usize, n: &Norm, eps: f32) {
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().sum::<f32>() / h as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&n.g).zip(&n.b) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// GELU with the error function (as BERT defines it).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

/// The error function, from Numerical Recipes' Chebyshev fit of erfc
/// (relative error below 1.2e-7).
fn erf(x: f32) -> f32 {
    let z = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erf = 1.0 - r;
    (if x >= 0.0 { erf } else { -erf }) as f32
}

/// BERT's basic tokenizer, uncased: control characters dropped, accents
/// stripped, lower case, split on white space and punctuation (each
/// punctuation mark a word), CJK ideographs one word each.
pub(crate) fn basic_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, words: &mut Vec<String>| {
        if !cur.is_empty() {
            words.push(std::mem::take(cur));
        }
    };
    for ch in text.chars().flat_map(|c| c.to_lowercase()).nfd() {
        if ch == '\0' || ch == '\u{fffd}' || (ch.is_control() && !ch.is_whitespace()) {
            continue;
        }
        if is_mark(ch) {
            continue;
        }
        if ch.is_whitespace() {
            flush(&mut cur, &mut words);
        } else if is_punctuation(ch) || is_cjk(ch) {
            flush(&mut cur, &mut words);
            words.push(ch.to_string());
        } else {
            cur.push(ch);
        }
    }
    flush(&mut cur, &mut words);
    words
}

/// Combining marks (what stripping accents removes after NFD).
fn is_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || (!c.is_ascii()
            && !c.is_alphanumeric()
            && !c.is_whitespace()
            && matches!(c as u32, 0x2000..=0x206F | 0x3000..=0x303F | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0x00A1..=0x00BF))
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Greedy longest-match-first word pieces of `word` (`##` marks a piece
/// inside a word); a word that cannot be cut is `[UNK]`.
pub(crate) fn word_pieces(word: &str, index: &HashMap<String, u32>, unk: u32, out: &mut Vec<u32>) {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() > 100 {
        out.push(unk);
        return;
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut buf = String::new();
    while start < chars.len() {
        let mut end = chars.len();
        let mut found = None;
        while start < end {
            buf.clear();
            if start > 0 {
                buf.push_str("##");
            }
            buf.extend(&chars[start..end]);
            if let Some(&id) = index.get(buf.as_str()) {
                found = Some(id);
                break;
            }
            end -= 1;
        }
        match found {
            Some(id) => pieces.push(id),
            None => {
                out.push(unk);
                return;
            }
        }
        start = end;
    }
    out.extend(pieces);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A two-layer encoder with made-up weights, enough to check the byte
    /// format, the tokenizer and the trainer's use of it.
    pub(crate) fn tiny() -> Encoder {
        let shape = Shape {
            layers: 2,
            hidden: 8,
            heads: 2,
            intermediate: 16,
            positions: MAX_TOKENS,
            vocab: 9,
            layer_norm_eps: 1e-12,
        };
        let pieces = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "play", "##ing", "music", "!", "jazz",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut w = Writer { out: Vec::new() };
        let mut k = 0u32;
        let mut fill = |rows: usize, cols: usize, w: &mut Writer| {
            let v: Vec<f32> = (0..rows * cols.max(1))
                .map(|_| {
                    k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    ((k >> 8) % 1000) as f32 / 1000.0 - 0.5
                })
                .collect();
            if cols == 0 {
                w.vector(&v)
            } else {
                w.matrix(&v, cols)
            }
        };
        for (_, r, c) in embedding_tensors(&shape) {
            fill(r, c, &mut w);
        }
        for _ in 0..shape.layers {
            for (_, r, c) in layer_tensors(&shape) {
                fill(r, c, &mut w);
            }
        }
        Encoder::assemble(shape, pieces, &w.out).unwrap()
    }

    #[test]
    fn word_pieces_and_specials() {
        let e = tiny();
        // [CLS] play ##ing music ! [UNK] [SEP]
        assert_eq!(
            e.tokenize("Playing MUSIC! Bëbop"),
            vec![2, 4, 5, 6, 7, 1, 3]
        );
        assert_eq!(e.tokenize(""), vec![2, 3]);
        let long = "jazz ".repeat(500);
        assert_eq!(e.tokenize(&long).len(), MAX_TOKENS);
    }

    #[test]
    fn embeddings_are_unit_vectors_and_survive_the_bytes() {
        let e = tiny();
        let v = e.embed("play jazz");
        assert_eq!(v.len(), 8);
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let again = Encoder::from_bytes(e.to_bytes()).unwrap();
        assert_eq!(again, e);
        assert_eq!(again.embed("play jazz"), v);
        assert_ne!(e.embed("music"), v);
    }

    #[test]
    fn damaged_bytes_are_refused() {
        let e = tiny();
        let b = e.to_bytes();
        assert!(Encoder::from_bytes(&b[..b.len() - 1]).is_err());
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(Encoder::from_bytes(&longer).is_err());
        assert!(Encoder::from_bytes(b"COACHEN1\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn dimensions_a_file_cannot_afford_are_refused() {
        let huge = Shape {
            layers: 6,
            hidden: 1 << 40,
            heads: 1,
            intermediate: 1 << 40,
            positions: MAX_TOKENS,
            vocab: 1 << 40,
            layer_norm_eps: 1e-12,
        };
        assert!(check_shape(&huge).is_err());
        let minilm = Shape {
            layers: 6,
            hidden: 384,
            heads: 12,
            intermediate: 1536,
            positions: 512,
            vocab: 30522,
            layer_norm_eps: 1e-12,
        };
        assert!(check_shape(&minilm).is_ok());
        assert!(check_shape(&Shape { heads: 5, ..minilm }).is_err());
    }

    #[test]
    fn erf_is_accurate() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }
}
