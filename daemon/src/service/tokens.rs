//! Who a request's token is: the store's answer, kept for [`TOKEN_TTL`] so
//! a busy route (predictions at 1,000 a second) does not ask the store at
//! every request. A token revoked through this daemon is forgotten at once;
//! one revoked by another process (`coach token revoke` on the store) stops
//! working within [`TOKEN_TTL`]. Unknown tokens are never kept.

use super::Service;
use crate::store::tokens::TokenRow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a token's row is trusted without asking the store again.
pub const TOKEN_TTL: Duration = Duration::from_secs(1);
/// Tokens kept at most (then the cache starts again).
const MAX_KEPT: usize = 1024;

#[derive(Default)]
pub struct TokenCache(Mutex<HashMap<String, (TokenRow, Instant)>>);

impl Service {
    /// The live token with this hash (the store's answer, at most
    /// [`TOKEN_TTL`] old).
    pub async fn token(&self, hash: &str) -> anyhow::Result<Option<TokenRow>> {
        {
            let kept = self.tokens.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((row, at)) = kept.get(hash)
                && at.elapsed() < TOKEN_TTL
            {
                return Ok(Some(row.clone()));
            }
        }
        let row = self.store.token_by_hash(hash).await?;
        let mut kept = self.tokens.0.lock().unwrap_or_else(|e| e.into_inner());
        match &row {
            Some(r) => {
                if kept.len() >= MAX_KEPT {
                    kept.clear();
                }
                kept.insert(hash.to_owned(), (r.clone(), Instant::now()));
            }
            None => {
                kept.remove(hash);
            }
        }
        Ok(row)
    }

    /// Forget every kept token (after a revocation).
    pub fn forget_tokens(&self) {
        self.tokens
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
