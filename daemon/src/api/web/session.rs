//! Browser sessions: an API token, given once at sign-in, becomes a random
//! session id in an `HttpOnly`, `SameSite=Strict` cookie. The session keeps
//! the token's hash (never the token), so a revoked token ends its sessions
//! at the next request, and a CSRF token that every state-changing form
//! must send back.
//!
//! Sessions live in memory: a daemon restart signs everyone out. Their
//! number is bounded; past it the session closest to expiring goes first.

use crate::core::sync::Lock;
use crate::service::Service;
use crate::store::tokens::{Role, hash_token};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "coach_session";
/// How long a session lasts after sign-in, whatever its use.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(3600);
/// Sessions kept at most (each is a few hundred bytes).
pub const MAX_SESSIONS: usize = 10_000;
/// Sessions one token keeps at most (browsers, devices).
pub const MAX_PER_TOKEN: usize = 20;

/// Where to go after signing in, when it is a path of this site: one `/`
/// then printable ASCII without `\` (browsers drop tabs and newlines from
/// URLs, so `/\t/evil.example` would leave the site).
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.len() < 2048
        && next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(next)
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token's SHA-256, checked again on every request.
    pub token_hash: String,
    pub token_id: i64,
    /// The token's name: who acts, in the audit trail.
    pub name: String,
    pub role: Role,
    /// Sent back by every form and script that changes something.
    pub csrf: String,
    pub expires: Instant,
    pub last_used: Instant,
}

impl Session {
    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// The sessions of one daemon, by the SHA-256 of their cookie value (a
/// leaked memory dump gives no usable cookie).
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

impl Sessions {
    /// Sign in with an API token: the new session's cookie value, or why not.
    pub async fn sign_in(
        &self,
        service: &Service,
        token: &str,
    ) -> Result<(String, Session), String> {
        let token = token.trim();
        if token.is_empty() || token.len() > 256 {
            return Err(
                "paste an API token (`coach token create --role viewer --name you`)".into(),
            );
        }
        let hash = hash_token(token);
        let row = service
            .token(&hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "sign-in could not read the store");
                "Coach could not check the token just now; try again (the daemon's log says why)"
                    .to_owned()
            })?
            .ok_or_else(|| "unknown or revoked token".to_owned())?;
        let role: Role = row.role.parse()?;
        let now = Instant::now();
        let session = Session {
            token_hash: hash,
            token_id: row.id,
            name: row.name,
            role,
            csrf: random_hex(),
            expires: now + LIFETIME,
            last_used: now,
        };
        let id = random_hex();
        let mut all = self.by_id.locked();
        all.retain(|_, s| s.expires > now && now - s.last_used < IDLE);
        // One token's many sign-ins push out its own oldest session, never
        // another token's.
        let mine: Vec<(String, Instant)> = all
            .iter()
            .filter(|(_, s)| s.token_id == session.token_id)
            .map(|(k, s)| (k.clone(), s.expires))
            .collect();
        if mine.len() >= MAX_PER_TOKEN
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, e)| *e)
        {
            all.remove(oldest);
        }
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            all.remove(&oldest);
        }
        all.insert(hash_token(&id), session.clone());
        Ok((id, session))
    }

    /// The live session of a cookie value, its token still valid; `touch`
    /// counts it as used (a page's own refresh does not).
    pub async fn get(&self, service: &Service, id: &str, touch: bool) -> Option<Session> {
        let key = hash_token(id);
        let now = Instant::now();
        let session = {
            let mut all = self.by_id.locked();
            let s = all.get_mut(&key)?;
            if s.expires <= now || now - s.last_used >= IDLE {
                all.remove(&key);
                return None;
            }
            if touch {
                s.last_used = now;
            }
            s.clone()
        };
        // A revoked token (or one whose role changed) ends the session.
        match service.token(&session.token_hash).await {
            Ok(Some(row)) if row.role.parse::<Role>().ok() == Some(session.role) => Some(session),
            Ok(_) => {
                self.by_id.locked().remove(&key);
                None
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "a dashboard session could not check its token");
                None
            }
        }
    }

    /// Whether the session of cookie value `id` is still live, without
    /// counting as use (an open event stream is not a person at the page).
    pub fn alive(&self, id: &str) -> bool {
        let now = Instant::now();
        self.by_id
            .locked()
            .get(&hash_token(id))
            .is_some_and(|s| s.expires > now && now - s.last_used < IDLE)
    }

    pub fn sign_out(&self, id: &str) {
        self.by_id.locked().remove(&hash_token(id));
    }

    /// How many sessions are live (for tests and metrics).
    pub fn count(&self) -> usize {
        self.by_id.locked().len()
    }
}

/// The session cookie's value in a `Cookie` header.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a new session; `Secure` when the browser reached Coach
/// over TLS (through a proxy that says so).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Compare two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let mut h = axum::http::HeaderMap::new();
        let id = "a".repeat(64);
        h.insert(
            axum::http::header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(cookie_value(&h), Some(id));
        h.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}=../../etc").parse().unwrap(),
        );
        assert_eq!(cookie_value(&h), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn the_cookie_is_strict_and_http_only() {
        let c = set_cookie("x", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("x", false).contains("Secure"));
    }
}
