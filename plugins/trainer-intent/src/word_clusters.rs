//! Word clusters: each word piece of the shipped word vectors' vocabulary
//! assigned to one of about a thousand groups of pieces that mean alike,
//! shipped with the trainer (`data/word-clusters.bin`;
//! `examples/cluster.rs` makes it from the table).
//!
//! The groups are k-means clusters of the whole-word pieces' vectors;
//! every piece that can start a word then went to its nearest centre. A
//! word's cluster is that of its first piece (`cancel` for
//! `cancellation`, `hair` for `hairfall`). The featurizer gives each
//! word's cluster, and each pair of neighbouring words' clusters, a
//! feature of its own beside the word n-grams: a model that learnt
//! `wake me on monday` then gives some weight to `wake me on tuesday`. Where the
//! static vectors' sum blurs a message into one point, the clusters keep
//! which words stood where.

use crate::word_vectors::{self, MAX_SPELLED, WordVectors, fnv1a};
use std::sync::OnceLock;

const MAGIC: &[u8; 8] = b"COACHWK1";

/// The clusters that ship with the trainer.
const SHIPPED: &[u8] = include_bytes!("../data/word-clusters.bin");

/// No cluster: the special pieces (`[UNK]`, `[CLS]`, …) and continuations
/// (`##ing`), which never start a word.
const NONE: u16 = u16::MAX;

/// A loaded assignment of pieces to clusters.
pub struct WordClusters {
    /// Clusters in all.
    k: usize,
    /// Per piece of `table`, its cluster or [`NONE`].
    ids: Vec<u16>,
    table: &'static WordVectors,
    /// Names this assignment in a model (FNV-1a of its bytes).
    id: String,
}

impl std::fmt::Debug for WordClusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordClusters")
            .field("k", &self.k)
            .field("pieces", &self.ids.len())
            .field("id", &self.id)
            .finish()
    }
}

impl PartialEq for WordClusters {
    fn eq(&self, other: &WordClusters) -> bool {
        self.id == other.id
    }
}

/// The header of the assignment's bytes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    k: usize,
    /// The id of the word vectors whose pieces are assigned.
    table: String,
    /// Where the clusters came from, for people reading the file.
    source: String,
}

/// The clusters that ship with the trainer, loaded once.
pub fn shipped() -> &'static WordClusters {
    static CLUSTERS: OnceLock<WordClusters> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        WordClusters::from_bytes(SHIPPED, word_vectors::shipped())
            .expect("the shipped clusters are valid")
    })
}

impl WordClusters {
    /// Write an assignment of the pieces of the word vectors `table` (its
    /// id): `ids` holds one cluster below `k` per piece, or `None`.
    pub fn to_bytes(k: usize, ids: &[Option<u16>], table: &str, source: &str) -> Vec<u8> {
        assert!(k < NONE as usize, "at most {} clusters", NONE);
        let header = serde_json::to_vec(&Header {
            k,
            table: table.to_owned(),
            source: source.to_owned(),
        })
        .expect("header serialises");
        let mut out = Vec::with_capacity(12 + header.len() + 2 * ids.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for id in ids {
            let id = id.inspect(|&c| assert!((c as usize) < k)).unwrap_or(NONE);
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// Read what [`WordClusters::to_bytes`] wrote, for `table`.
    pub fn from_bytes(bytes: &[u8], table: &'static WordVectors) -> Result<WordClusters, String> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err("word clusters: missing header".into());
        }
        let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let end = 12usize
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or("word clusters: truncated header")?;
        let h: Header = serde_json::from_slice(&bytes[12..end])
            .map_err(|e| format!("word clusters: header: {e}"))?;
        if h.table != table.id() {
            return Err(format!(
                "word clusters: made for word vectors {}, not {}",
                h.table,
                table.id()
            ));
        }
        let rest = &bytes[end..];
        if rest.len() != 2 * table.len() {
            return Err(format!(
                "word clusters: {} bytes for {} pieces",
                rest.len(),
                table.len()
            ));
        }
        let ids: Vec<u16> = rest
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        if h.k == 0 || ids.iter().any(|&c| c != NONE && c as usize >= h.k) {
            return Err(format!("word clusters: a cluster outside 0..{}", h.k));
        }
        Ok(WordClusters {
            k: h.k,
            ids,
            table,
            id: format!("{:016x}", fnv1a(bytes)),
        })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cluster of `word` (a word as the featurizer cuts text): that of
    /// its first piece, if it has one.
    /// A word over [`MAX_SPELLED`] characters has none: no word of the
    /// language is that long, and cutting one into pieces costs its
    /// length squared.
    pub fn of(&self, word: &str) -> Option<u16> {
        if word.chars().nth(MAX_SPELLED).is_some() {
            return None;
        }
        let first = self.table.first_piece(word)?;
        self.ids.get(first as usize).copied().filter(|&c| c != NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_clusters_group_words_alike() {
        let c = shipped();
        assert!(c.k() >= 256, "{c:?}");
        let same = |a: &str, b: &str| c.of(a).is_some() && c.of(a) == c.of(b);
        // A word's cluster is that of its first piece.
        assert!(same("cancel", "cancellation"), "{:?}", c.of("cancellation"));
        // Words alike share a cluster far more often than words apart.
        let alike = [
            ("monday", "tuesday"),
            ("january", "february"),
            ("red", "blue"),
            ("dollars", "euros"),
            ("car", "truck"),
            ("song", "songs"),
            ("rain", "snow"),
            ("mother", "father"),
            ("paris", "london"),
            ("five", "six"),
        ];
        let apart = alike.map(|(a, _)| a);
        let shared = alike.iter().filter(|(a, b)| same(a, b)).count();
        let mut crossed = 0;
        for (i, a) in apart.iter().enumerate() {
            for b in &apart[i + 1..] {
                crossed += usize::from(same(a, b));
            }
        }
        assert!(shared >= 6, "{shared} of {} pairs alike share", alike.len());
        assert!(crossed <= 2, "{crossed} of 45 unrelated pairs share");
        // Nothing to cluster: no word, an unknown character, digits alone
        // still have a piece.
        assert_eq!(c.of(""), None);
        assert_eq!(c.of("\u{e000}"), None);
        assert!(c.of("30").is_some());
        assert_eq!(c.of(&"a".repeat(MAX_SPELLED + 1)), None);
    }

    #[test]
    fn an_assignment_survives_its_bytes_and_damage_is_refused() {
        let table = word_vectors::shipped();
        let n = table.len();
        let ids: Vec<Option<u16>> = (0..n)
            .map(|i| (i % 3 != 0).then_some((i % 5) as u16))
            .collect();
        let bytes = WordClusters::to_bytes(5, &ids, table.id(), "test");
        let c = WordClusters::from_bytes(&bytes, table).unwrap();
        assert_eq!(c.k(), 5);
        assert_ne!(c.id(), shipped().id());
        for cut in [0, 11, bytes.len() - 1] {
            assert!(
                WordClusters::from_bytes(&bytes[..cut], table).is_err(),
                "{cut}"
            );
        }
        // A cluster out of range, or made for another table.
        let mut wild = bytes.clone();
        let at = bytes.len() - 2;
        wild[at..].copy_from_slice(&7u16.to_le_bytes());
        assert!(WordClusters::from_bytes(&wild, table).is_err());
        let other = WordClusters::to_bytes(5, &ids, "0000000000000000", "test");
        let err = WordClusters::from_bytes(&other, table).unwrap_err();
        assert!(err.contains("made for word vectors"), "{err}");
        let short = WordClusters::to_bytes(5, &ids[1..], table.id(), "test");
        assert!(WordClusters::from_bytes(&short, table).is_err());
    }
}
