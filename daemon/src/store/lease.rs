//! One daemon per PostgreSQL database, until fleets of daemons are
//! supported: a session-level advisory lock, taken at start on a
//! connection of its own and held for the daemon's life. A second daemon
//! (another host, another data directory) refuses to start and names the
//! holder. The lock dies with its session, so a daemon that is killed
//! frees it at once; one whose host vanishes frees it when PostgreSQL
//! ends the silent session (`idle_session_timeout`, see [`IDLE_LIMIT`]).
//!
//! SQLite needs none of this: its file sits in the data directory, which
//! the daemon locks already.

use anyhow::{Context, Result, bail};
use sea_orm::sqlx::{Connection, PgConnection};
use std::time::Duration;

/// The advisory lock's key: "Coach" in ASCII.
const KEY: i64 = 0x43_6f_61_63_68;
/// How `pg_locks` shows a bigint key: its high and low 32 bits.
const KEY_HIGH: i64 = KEY >> 32;
const KEY_LOW: i64 = KEY & 0xffff_ffff;
/// How often the holder shows PostgreSQL it is alive.
pub const PING: Duration = Duration::from_secs(15);
/// A holder silent this long is ended by PostgreSQL (14 and later), and
/// its lock with it.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// The lock, held while this lives.
pub struct DatabaseLease {
    conn: PgConnection,
    holder: String,
}

impl DatabaseLease {
    /// Take the lock of the database at `url` for `holder` (a short
    /// description: host and pid). `None` for SQLite.
    pub async fn acquire(url: &str, holder: &str) -> Result<Option<DatabaseLease>> {
        if !url.starts_with("postgres") {
            return Ok(None);
        }
        let mut conn = PgConnection::connect(url).await.with_context(|| {
            format!("cannot open the database {} to lock it", super::redact(url))
        })?;
        // application_name is what a refused daemon reads to name us.
        let name: String = holder.chars().take(63).collect();
        sea_orm::sqlx::query("SELECT set_config('application_name', $1, false)")
            .bind(&name)
            .execute(&mut conn)
            .await?;
        // PostgreSQL 14 and later end a silent session; older ones keep it
        // until TCP notices the host is gone.
        let _ = sea_orm::sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(format!("{}s", IDLE_LIMIT.as_secs()))
            .execute(&mut conn)
            .await;
        let got: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(KEY)
            .fetch_one(&mut conn)
            .await?;
        if !got {
            let who: Option<(Option<String>, Option<String>, Option<String>)> =
                sea_orm::sqlx::query_as(
                    "SELECT a.application_name, host(a.client_addr), \
                     to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') \
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted \
                     AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1",
                )
                .bind(KEY_HIGH)
                .bind(KEY_LOW)
                .fetch_optional(&mut conn)
                .await
                .unwrap_or(None);
            let who = match who {
                Some((name, addr, since)) => format!(
                    "{} from {} since {}",
                    name.filter(|n| !n.is_empty())
                        .unwrap_or_else(|| "an unnamed session".into()),
                    addr.unwrap_or_else(|| "a local socket".into()),
                    since.unwrap_or_default()
                ),
                None => "a session that could not be named".into(),
            };
            let _ = conn.close().await;
            bail!(
                "another Coach daemon serves the database {} ({}); one daemon per database: stop it first, or give this daemon a database of its own",
                super::redact(url),
                crate::core::text::printable(&who)
            );
        }
        Ok(Some(DatabaseLease { conn, holder: name }))
    }

    /// Show PostgreSQL the holder is alive; an error when the session (and
    /// with it the lock) is gone.
    pub async fn ping(&mut self) -> Result<()> {
        let held: bool = sea_orm::sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND granted AND pid = pg_backend_pid() AND classid::bigint = $1 AND objid::bigint = $2)",
        )
        .bind(KEY_HIGH)
        .bind(KEY_LOW)
        .fetch_one(&mut self.conn)
        .await
        .context("the connection holding the database lock is gone")?;
        if !held {
            bail!("the database lock is no longer held");
        }
        Ok(())
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Let go of the lock (also done by dropping it: the session ends).
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}
