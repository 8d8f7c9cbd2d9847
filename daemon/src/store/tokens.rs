//! API tokens: created with a role, stored as their SHA-256, revoked by id.
//! A token is 32 random bytes, shown once as `coach_` + hex.

use super::Store;
use super::entities::api_tokens;
use anyhow::{Context, Result};
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

pub use super::entities::api_tokens::Model as TokenRow;

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also label and adjudicate review items.
    Reviewer,
    /// Also trigger and cancel runs.
    Operator,
    /// Also manage tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "reviewer" => Ok(Role::Reviewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}`; expected viewer, reviewer, operator or admin"
            )),
        }
    }
}

pub fn hash_token(token: &str) -> String {
    crate::core::hash::sha256_hex(token.as_bytes())
}

impl Store {
    /// A new token; returns its row and the token, which is not stored.
    pub async fn create_token(&self, name: &str, role: Role) -> Result<(TokenRow, String)> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("no randomness for a token")?;
        let token = format!("coach_{}", hex::encode(bytes));
        let row = api_tokens::ActiveModel {
            name: Set(name.to_owned()),
            role: Set(role.as_str().to_owned()),
            token_hash: Set(hash_token(&token)),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok((row, token))
    }

    /// The live (not revoked) token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        Ok(api_tokens::Entity::find()
            .filter(api_tokens::Column::TokenHash.eq(hash))
            .filter(api_tokens::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        Ok(api_tokens::Entity::find()
            .order_by_asc(api_tokens::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Revoke token `id` — unless it is the last live admin token: that
    /// would lock everyone out of the API's admin routes.
    pub async fn revoke_token(&self, id: i64) -> Result<Revoked> {
        let tx = self.begin_write().await?;
        let Some(t) = api_tokens::Entity::find_by_id(id)
            .filter(api_tokens::Column::RevokedAt.is_null())
            .one(&tx)
            .await?
        else {
            return Ok(Revoked::NoSuchToken);
        };
        if t.role == Role::Admin.as_str() {
            // The live admin rows stay locked until the commit, so two
            // revokes at once cannot both see "another admin is left"
            // (PostgreSQL; SQLite's write transaction is already exclusive).
            use sea_orm::QuerySelect;
            let admins = api_tokens::Entity::find()
                .filter(api_tokens::Column::RevokedAt.is_null())
                .filter(api_tokens::Column::Role.eq(Role::Admin.as_str()))
                .lock_exclusive()
                .all(&tx)
                .await?
                .len();
            if admins <= 1 {
                return Ok(Revoked::LastAdmin);
            }
        }
        let mut t: api_tokens::ActiveModel = t.into();
        t.revoked_at = Set(Some(Utc::now()));
        t.update(&tx).await?;
        tx.commit().await?;
        Ok(Revoked::Done)
    }
}

/// Longest token name, in characters.
pub const MAX_NAME: usize = 64;

/// A token name as it is kept: trimmed, 1 to [`MAX_NAME`] characters,
/// none of them a control character (names are shown on terminals).
pub fn token_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "must be 1 to {MAX_NAME} characters, none of them control characters"
        ));
    }
    Ok(name)
}

/// What [`Store::revoke_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Done,
    NoSuchToken,
    /// Refused: it is the last live admin token.
    LastAdmin,
}

impl Revoked {
    pub const LAST_ADMIN: &'static str = "it is the last admin token; create another admin token first (`coach token create --role admin`)";
}
