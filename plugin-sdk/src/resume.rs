//! A resumable cursor for sources that read their records up front and
//! can order them by a key that grows with time — a conversation's last
//! message, say.
//!
//! The checkpoint is the key of the last conversation handed out; opening
//! again with it hands out only those with a greater key. A conversation
//! that gained messages since has a greater key, so it is handed out again
//! whole: an incremental step then replaces its earlier copy.
//!
//! ```
//! use coach_plugin_sdk::resume::Ordered;
//! use coach_plugin_sdk::{Conversation, Cursor, SourceStats};
//!
//! let conv = |id: &str| Conversation { id: id.into(), messages: Vec::new() };
//! // Keyed by (last message time, id): ties in time are broken by id.
//! let items = vec![((20, "b".to_owned()), conv("b")), ((10, "a".to_owned()), conv("a"))];
//! let mut cursor = Ordered::new(items.clone(), None, SourceStats::default()).unwrap();
//! assert_eq!(cursor.next_batch(1).unwrap().conversations[0].id, "a");
//! let resumed = Ordered::new(items, Some(cursor.checkpoint()), SourceStats::default()).unwrap();
//! assert_eq!(resumed.remaining(), 1);
//! ```

use crate::{Batch, Conversation, Cursor, PluginError, SourceStats, host};
use serde::{Serialize, de::DeserializeOwned};

/// Conversations ordered by `K`, handed out after a checkpoint.
pub struct Ordered<K> {
    items: std::vec::IntoIter<(K, Conversation)>,
    at: Option<K>,
    stats: SourceStats,
}

impl<K> Ordered<K>
where
    K: Ord + Clone + Serialize + DeserializeOwned + 'static,
{
    /// `items` in any order; `checkpoint` as [`Cursor::checkpoint`] gave
    /// it (an empty one is none); `stats` what reading them counted.
    pub fn new(
        mut items: Vec<(K, Conversation)>,
        checkpoint: Option<String>,
        stats: SourceStats,
    ) -> Result<Ordered<K>, PluginError> {
        let at: Option<K> = match checkpoint.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(serde_json::from_str(&c).map_err(|e| {
                PluginError::bad_config(format!("checkpoint `{c}` is not this plugin's: {e}"))
            })?),
        };
        items.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(at) = &at {
            items.retain(|(k, _)| k > at);
        }
        Ok(Ordered {
            items: items.into_iter(),
            at,
            stats,
        })
    }

    /// Conversations still to hand out.
    pub fn remaining(&self) -> usize {
        self.items.len()
    }
}

impl<K> Cursor for Ordered<K>
where
    K: Ord + Clone + Serialize + DeserializeOwned + 'static,
{
    fn next_batch(&mut self, max: u32) -> Result<Batch, PluginError> {
        if host::cancelled() {
            return Err(PluginError::cancelled());
        }
        let mut batch = Batch::default();
        for (key, conversation) in self.items.by_ref().take(max.max(1) as usize) {
            self.at = Some(key);
            batch.conversations.push(conversation);
        }
        Ok(batch)
    }

    fn checkpoint(&self) -> String {
        self.at
            .as_ref()
            .map(|k| serde_json::to_string(k).expect("a checkpoint key serializes"))
            .unwrap_or_default()
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}
