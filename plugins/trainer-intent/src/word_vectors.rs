//! Static word vectors: one vector per word piece of a sentence encoder's
//! vocabulary, distilled once from the encoder and shipped with the
//! trainer (`data/word-vectors.bin`; `examples/distill.rs` makes it).
//!
//! Each piece went through the transformer alone (`[CLS] piece [SEP]`,
//! mean-pooled); the table was then cut to its leading principal
//! directions and quantised to 8 bits per row. A text's vector is the
//! IDF-weighted sum of its pieces' vectors, unit length: some of the
//! encoder's sense of which words mean alike (`cancel` near `stop`), at
//! the cost of a table lookup per word instead of a pass through the
//! transformer.

use crate::encoder::{basic_words, quantise, word_pieces};
use std::collections::HashMap;
use std::sync::OnceLock;

const MAGIC: &[u8; 8] = b"COACHWV1";

/// The table that ships with the trainer.
const SHIPPED: &[u8] = include_bytes!("../data/word-vectors.bin");

/// The longest word [`WordVectors::spells`] may spell, in characters.
pub const MAX_SPELLED: usize = 40;

/// Pieces per text that count; the rest of a longer text is ignored.
const MAX_PIECES: usize = 256;

/// A loaded table.
pub struct WordVectors {
    dims: usize,
    index: HashMap<String, u32>,
    unk: u32,
    scales: Vec<f32>,
    codes: Vec<i8>,
    /// Names this table in a model (FNV-1a of its bytes), so that a model
    /// is never read against a different one.
    id: String,
}

impl std::fmt::Debug for WordVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordVectors")
            .field("pieces", &self.scales.len())
            .field("dims", &self.dims)
            .field("id", &self.id)
            .finish()
    }
}

impl PartialEq for WordVectors {
    fn eq(&self, other: &WordVectors) -> bool {
        self.id == other.id
    }
}

/// The header of the table's bytes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    dims: usize,
    pieces: Vec<String>,
    /// Where the vectors came from, for people reading the file.
    source: String,
}

/// FNV-1a: stable across platforms and releases, unlike the std hasher.
pub(crate) fn fnv1a<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The table that ships with the trainer, loaded once.
pub fn shipped() -> &'static WordVectors {
    static TABLE: OnceLock<WordVectors> = OnceLock::new();
    TABLE.get_or_init(|| WordVectors::from_bytes(SHIPPED).expect("the shipped table is valid"))
}

impl WordVectors {
    /// Write a table: `vectors` is `pieces × dims`, each row quantised to
    /// 8 bits with its own scale.
    pub fn to_bytes(pieces: &[String], dims: usize, vectors: &[f32], source: &str) -> Vec<u8> {
        assert_eq!(vectors.len(), pieces.len() * dims, "one row per piece");
        let header = serde_json::to_vec(&Header {
            dims,
            pieces: pieces.to_vec(),
            source: source.to_owned(),
        })
        .expect("header serialises");
        let mut out = Vec::with_capacity(12 + header.len() + pieces.len() * (dims + 4));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        let (scales, codes) = quantise(vectors, dims);
        for scale in scales {
            out.extend_from_slice(&scale.to_le_bytes());
        }
        out.extend(codes.iter().map(|&c| c as u8));
        out
    }

    /// Read what [`WordVectors::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<WordVectors, String> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err("word vectors: missing header".into());
        }
        let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let end = 12usize
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or("word vectors: truncated header")?;
        let h: Header = serde_json::from_slice(&bytes[12..end])
            .map_err(|e| format!("word vectors: header: {e}"))?;
        let n = h.pieces.len();
        if h.dims == 0 || h.dims > 4096 || n == 0 {
            return Err(format!("word vectors: {n} pieces of {} dimensions", h.dims));
        }
        let rest = &bytes[end..];
        let expected = n.checked_mul(4 + h.dims);
        if expected != Some(rest.len()) {
            return Err(format!(
                "word vectors: {} bytes of vectors for {n} pieces of {} dimensions",
                rest.len(),
                h.dims
            ));
        }
        let scales: Vec<f32> = rest[..4 * n]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if scales.iter().any(|s| !s.is_finite()) {
            return Err("word vectors: a scale is not finite".into());
        }
        let codes = rest[4 * n..].iter().map(|&b| b as i8).collect();
        let index: HashMap<String, u32> = h
            .pieces
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, i as u32))
            .collect();
        let unk = *index.get("[UNK]").ok_or("word vectors: no `[UNK]` piece")?;
        Ok(WordVectors {
            dims: h.dims,
            index,
            unk,
            scales,
            codes,
            id: format!("{:016x}", fnv1a(bytes)),
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The word pieces of `text` (as the encoder cuts it, without `[CLS]`
    /// and `[SEP]`), at most [`MAX_PIECES`].
    pub fn pieces(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for word in basic_words(text) {
            if ids.len() >= MAX_PIECES {
                break;
            }
            word_pieces(&word, &self.index, self.unk, &mut ids);
        }
        ids.truncate(MAX_PIECES);
        ids
    }

    /// Pieces in the vocabulary.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Every piece with its number.
    pub fn vocabulary(&self) -> impl Iterator<Item = (&str, u32)> {
        self.index.iter().map(|(p, &i)| (p.as_str(), i))
    }

    /// The first word piece of `word`, unless that is `[UNK]` (or the
    /// word has none).
    pub fn first_piece(&self, word: &str) -> Option<u32> {
        let first = basic_words(word).into_iter().next()?;
        let mut ids = Vec::new();
        word_pieces(&first, &self.index, self.unk, &mut ids);
        ids.first().copied().filter(|&p| p != self.unk)
    }

    /// Whether `word` is a whole word of the vocabulary (one piece, not a
    /// `##` continuation).
    pub fn has_word(&self, word: &str) -> bool {
        self.index.contains_key(word)
    }

    /// Whether `word` reads as a word of the language the pieces came
    /// from: each of its parts is cut into pieces of three letters or more
    /// on average (`calcium`; `hairfall` = `hair ##fall`, `cancelling` =
    /// `cancel ##ling`). Keyboard mashing is cut into ones and twos
    /// (`asdkj` = `as ##d ##k ##j`), and so are filler (`lorem` = `lore
    /// ##m`) and some words of other languages (`mujhe` = `mu ##j ##he`;
    /// many others, `quiero`, `cancelar`, are spelled). A word over
    /// [`MAX_SPELLED`] characters is not: no word of the language is that
    /// long, and the cost of cutting one stays bounded.
    pub fn spells(&self, word: &str) -> bool {
        if word.chars().nth(MAX_SPELLED).is_some() {
            return false;
        }
        let parts = basic_words(word);
        !parts.is_empty()
            && parts.iter().all(|part| {
                let mut ids = Vec::new();
                word_pieces(part, &self.index, self.unk, &mut ids);
                !ids.contains(&self.unk) && part.chars().count() >= 3 * ids.len()
            })
    }

    /// The unit-length sum of the vectors of `pieces`, each weighted by
    /// `weight`; all zeros when there is nothing to sum.
    pub fn embed(&self, pieces: &[u32], weight: impl Fn(u32) -> f32) -> Vec<f32> {
        let d = self.dims;
        let mut v = vec![0.0f32; d];
        for &p in pieces {
            let Some(&scale) = self.scales.get(p as usize) else {
                continue;
            };
            let s = scale * weight(p);
            let codes = &self.codes[p as usize * d..(p as usize + 1) * d];
            for (out, &c) in v.iter_mut().zip(codes) {
                *out += s * c as f32;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v.iter_mut().for_each(|x| *x = 0.0);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn the_shipped_table_puts_words_alike_near_each_other() {
        let t = shipped();
        assert!(t.dims() >= 64, "{t:?}");
        let v = |text: &str| t.embed(&t.pieces(text), |_| 1.0);
        let norm = cosine(&v("cancel"), &v("cancel"));
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        // Synonyms and related words sit closer than unrelated ones.
        for (word, near, far) in [
            ("cancel", "stop", "weather"),
            ("song", "music", "invoice"),
            ("rain", "weather", "playlist"),
            ("money", "payment", "alarm"),
        ] {
            let (n, f) = (cosine(&v(word), &v(near)), cosine(&v(word), &v(far)));
            assert!(n > f, "{word}: {near} {n} against {far} {f}");
        }
        assert!(v("").iter().all(|&x| x == 0.0));
        // A text a thousand times too long counts its first MAX_PIECES
        // pieces; control characters are dropped, not embedded.
        let long = "cancel my order \u{0}\u{7} ".repeat(1_000);
        assert_eq!(t.pieces(&long).len(), MAX_PIECES);
        assert_eq!(t.pieces("cancel\u{0}\u{7}"), t.pieces("cancel"));
    }

    #[test]
    fn a_table_survives_its_bytes_and_damage_is_refused() {
        let pieces: Vec<String> = ["[UNK]", "book", "##ing", "flight"]
            .map(String::from)
            .to_vec();
        let vectors = [
            0.0, 0.0, 0.0, //
            1.0, 0.5, -0.25, //
            0.0, -2.0, 0.0, //
            0.3, 0.3, 0.3,
        ];
        let bytes = WordVectors::to_bytes(&pieces, 3, &vectors, "test");
        let t = WordVectors::from_bytes(&bytes).unwrap();
        assert_eq!(t.pieces("Booking FLIGHT"), [1, 2, 3]);
        assert_eq!(t.pieces("zzz"), [0]);
        let e = t.embed(&[1], |_| 1.0);
        let want = [1.0, 0.5, -0.25].map(|x: f32| x / 1.3125f32.sqrt());
        assert!(
            e.iter().zip(want).all(|(a, b)| (a - b).abs() < 0.01),
            "{e:?}"
        );
        // Weights count: piece 2 alone, at weight 0 for piece 1.
        let e = t.embed(&[1, 2], |p| if p == 1 { 0.0 } else { 1.0 });
        assert!((e[1] + 1.0).abs() < 1e-6, "{e:?}");
        assert_ne!(t.id(), shipped().id());
        for cut in [0, 11, bytes.len() - 1] {
            assert!(WordVectors::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut nan = bytes.clone();
        let at = bytes.len() - 4 * 3 - 4 * 4;
        nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(WordVectors::from_bytes(&nan).is_err());
    }
}
