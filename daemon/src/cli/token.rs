//! `coach token create|list|revoke`: API tokens, managed on the store
//! directly (this is how the first admin token comes to exist).

use crate::app::{App, Mode};
use crate::cli::{note, out};
use crate::config::Config;
use crate::core::text::printable;
use crate::store::tokens::{Revoked, Role, token_name};
use anyhow::{Result, bail};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token and print it (it is shown only this once).
    Create {
        /// viewer (read), operator (also trigger and cancel) or admin (also
        /// manage tokens).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Who or what the token is for.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Tokens (never the tokens themselves).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    let app = App::open(config, Mode::Command).await?;
    let store = &app.store;
    match cmd {
        Command::Create { role, name } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let name = token_name(&name).map_err(|m| anyhow::anyhow!("--name: {m}"))?;
            let (row, token) = store.create_token(name, role).await?;
            note!(
                "created token {} ({}, {}); keep it secret, it is not shown again:",
                row.id,
                row.name,
                row.role
            );
            out!("{token}");
        }
        Command::List => {
            for t in store.tokens().await? {
                out!(
                    "{:>4}  {:<20} {:<9} created {}{}",
                    t.id,
                    printable(&t.name),
                    t.role,
                    t.created_at.format("%Y-%m-%d %H:%M"),
                    t.revoked_at
                        .map(|r| format!(", revoked {}", r.format("%Y-%m-%d %H:%M")))
                        .unwrap_or_default()
                );
            }
        }
        Command::Revoke { id } => match store.revoke_token(id).await? {
            Revoked::Done => out!("revoked token {id}"),
            Revoked::NoSuchToken => bail!("no live token {id}"),
            Revoked::LastAdmin => bail!("token {id} was not revoked: {}", Revoked::LAST_ADMIN),
        },
    }
    Ok(ExitCode::SUCCESS)
}
