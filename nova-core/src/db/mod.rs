//! The database layer: one repository over PostgreSQL (deployments) and SQLite (the
//! all-in-one). Queries are written once in the SQL both understand; [`on_pool!`] and [`on_tx!`]
//! run them against whichever backend is configured. Rows stay in this module; callers get
//! [`crate::model`] types.

pub mod actions;
pub mod flavors;
pub mod identity;
pub mod images;
pub mod instances;
pub mod keypairs;
pub mod nodes;
pub mod quotas;
mod rows;
pub mod tasks;

use crate::settings::DatabaseSettings;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Postgres, Sqlite, Transaction};
use std::str::FromStr;
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
}

pub type DbResult<T> = Result<T, DbError>;

/// The driver error inside [`DbError::Sqlx`], for callers that tell outages from bugs.
pub use sqlx::Error as SqlxError;

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// A transaction on one of the two backends.
pub enum Tx {
    Pg(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs `$body` with `$p` bound to the backend's pool.
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Pg($p) => $body,
            $crate::db::Db::Sqlite($p) => $body,
        }
    };
}
/// Runs `$body` with `$c` bound to the transaction's connection.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::db::Tx::Pg(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::db::Tx::Sqlite(t) => {
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
            Db::Pg(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
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
        Ok(db)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Pg(_) => "postgresql",
            Db::Sqlite(_) => "sqlite",
        }
    }

    pub async fn begin(&self) -> DbResult<Tx> {
        Ok(match self {
            Db::Pg(p) => Tx::Pg(p.begin().await?),
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
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
