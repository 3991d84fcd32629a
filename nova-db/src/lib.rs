//! The database layer: one repository over PostgreSQL (deployments) and SQLite (the
//! all-in-one). Queries are written once in the SQL both understand; [`on_pool!`] and [`on_tx!`]
//! run them against whichever backend is configured. Rows stay in this module; callers get
//! [`nova_core::model`] types.

pub mod actions;
pub mod aggregates;
pub mod baremetal;
pub mod catalog;
pub mod firewall;
pub mod flavors;
pub mod idempotency;
pub mod identity;
pub mod images;
pub mod instances;
pub mod keypairs;
pub mod leases;
pub mod listing;
pub mod metadefs;
pub mod migrations;
pub mod networks;
pub mod nodes;
pub mod ports;
pub mod quotas;
mod rows;
pub mod security_groups;
pub mod server_groups;
pub mod subnets;
pub mod tasks;

use serde::Deserialize;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Postgres, Sqlite, Transaction};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("unsupported database url (expected postgres:// or sqlite://): {0}")]
    Url(String),
    /// A listing's regular expression that the database could not use.
    #[error("invalid regular expression: {0}")]
    BadPattern(String),
    /// A listing's value the database cannot hold (a NUL on PostgreSQL).
    #[error("invalid input: {0}")]
    BadInput(String),
}

impl DbError {
    /// Whether a unique constraint refused the write (a key already taken), on either backend.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }

    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(e)) if e.is_foreign_key_violation())
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// The bind placeholders of an `IN (…)` list of `count` values, numbered from `first`:
/// `$1, $2, $3` (both dialects take `$N`).
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The driver error inside [`DbError::Sqlx`], for callers that tell outages from bugs.
pub use sqlx::Error as SqlxError;

/// Where the database is (`[database]` in every process's configuration).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://path?mode=rwc`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://nova.sqlite?mode=rwc".into(),
            max_connections: 16,
        }
    }
}

/// Who looks, for the visibility rules of resources that projects share (images, networks):
/// the caller's project, and whether the caller is an admin (who sees everything).
#[derive(Clone, Copy, Debug)]
pub struct Viewer<'a> {
    pub project: &'a str,
    pub admin: bool,
}

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgDb),
    Sqlite(SqlitePool),
}

/// PostgreSQL: sqlx's pool, with connections kept warm in front of it.
///
/// Why: sqlx's pool checks every connection it gets back with a round trip to the server
/// (unconditionally, in sqlx 0.8 and 0.9). For the one-statement reads that most requests are,
/// that doubled the round trips, and on two shared cores each round trip is two wake-ups of
/// PostgreSQL and of the caller. A connection whose statement completed is known to be ready
/// (sqlx reads up to the server's ReadyForQuery), so it is kept here and handed to the next
/// statement without that check. A connection whose statement failed, or whose future was
/// dropped mid-statement, is never kept: it is dropped into sqlx's pool, which checks it as
/// before. At most half the pool is kept here, so transactions, which take their connection
/// from the pool itself, always find one.
#[derive(Clone, Debug)]
pub struct PgDb {
    pool: PgPool,
    warm: Arc<Mutex<Vec<PoolConnection<Postgres>>>>,
    keep: usize,
}

impl PgDb {
    fn new(pool: PgPool, max_connections: u32) -> Self {
        Self {
            pool,
            warm: Arc::default(),
            keep: usize::try_from(max_connections / 2).unwrap_or(0),
        }
    }

    /// A warm connection, or one from the pool.
    pub(crate) async fn take(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let warm = self
            .warm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match warm {
            Some(conn) => Ok(conn),
            None => self.pool.acquire().await,
        }
    }

    /// Keeps a connection whose statement completed, for the next one.
    pub(crate) fn keep(&self, conn: PoolConnection<Postgres>) {
        let mut warm = self.warm.lock().unwrap_or_else(PoisonError::into_inner);
        if warm.len() < self.keep {
            warm.push(conn);
        }
        // Otherwise `conn` drops here, back into sqlx's pool.
    }
}

/// A transaction on one of the two backends.
pub enum Tx {
    Pg(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs `$body` with `$p` bound to a connection of the backend: on PostgreSQL a warm one
/// ([`PgDb`]), kept again only if `$body` completes (an early return by `?` drops it into the
/// pool); on SQLite the pool itself.
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::Db::Pg(pg) => {
                let mut conn = pg.take().await?;
                let $p = &mut *conn;
                let out = $body;
                pg.keep(conn);
                out
            }
            $crate::Db::Sqlite($p) => $body,
        }
    };
}
/// Runs `$body` with `$c` bound to the transaction's connection.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Pg(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use {on_pool, on_tx};

impl Db {
    /// Connects and brings the schema up to date.
    pub async fn connect(settings: &DatabaseSettings) -> DbResult<Self> {
        let url = settings.url.as_str();
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // No ping before each use (sqlx's default): it doubled the round trips of every
            // request. A connection that died (a database restart) fails its next query
            // instead, which callers see as the database being unavailable (503, retryable),
            // and the pool replaces it.
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await?;
            PG_MIGRATIONS.run(&pool).await?;
            Db::Pg(PgDb::new(pool, settings.max_connections))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                // `REGEXP` for the listings' name filters (the regex crate's syntax).
                .with_regexp()
                .busy_timeout(Duration::from_secs(10));
            // One connection: SQLite serialises writers anyway, and a single connection avoids
            // SQLITE_BUSY on lock upgrades inside transactions. Statements are short.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Db::Sqlite(pool)
        } else {
            return Err(DbError::Url(url.to_owned()));
        };
        instances::backfill_hostnames(&db).await?;
        baremetal::backfill_placement_classes(&db).await?;
        Ok(db)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Pg(_) => "postgresql",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// Whether two transactions that write go on side by side (PostgreSQL); SQLite has one
    /// writer, and a second waits for the first.
    pub fn writes_side_by_side(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    pub async fn begin(&self) -> DbResult<Tx> {
        Ok(match self {
            Db::Pg(p) => Tx::Pg(p.pool.begin().await?),
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Pg(p) => {
                p.warm
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                p.pool.close().await;
            }
            Db::Sqlite(p) => p.close().await,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> DbResult<()> {
        match self {
            Tx::Pg(t) => t.commit().await?,
            Tx::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }
}

pub(crate) fn corrupt(what: impl Into<String>) -> DbError {
    DbError::Corrupt(what.into())
}
