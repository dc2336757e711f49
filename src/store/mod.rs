//! All of Headroom's SQL, and nothing else: the pool, migrations, partitions, identities (clusters,
//! workloads, containers, series), idempotent sample writes and reads. Functions are named after what they
//! do and return domain types.

mod alerts;
mod assess;
mod changes;
mod claims;
pub mod codec;
mod inventory;
mod locks;
mod marks;
mod points;
mod read;
mod reports;
mod retention;
mod samples;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use alerts::{AlertRound, ClaimedMessage, Completion, FactWindows, NewSilence, OutboxStatus};
pub use assess::{
    AssessTarget, ContainerResult, ExhaustionRow, ForecastRow, RecommendationRow, ResourceNow,
};
pub use changes::{DetailChange, DetailChanges};
pub use claims::Claim;
pub use inventory::{ContainerKey, WorkloadKey};
pub use locks::LockGuard;
pub use points::{Grid, Point, SamplePoints, Samples};
pub use read::{
    ContainerSeries, ExhaustionRecord, ForecastRecord, RecommendationRecord, WorkloadQuery,
    WorkloadRow,
};
pub use reports::{
    ForecastAt, LatestExhaustion, LatestRecommendation, PastForecast, ScopeContainer, ScopeFilter,
    StoredReport,
};
pub use retention::{
    HOUR_SECS, HistoryStat, HourlyRollup, Partition, ROLLUP_CHUNK_SECS, ResultsPruned,
    RetentionReport, RollupStats, SeriesSelection,
};
pub use samples::{CHUNK_SECS, WriteStats};

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why a store operation failed; callers branch on `Unavailable` (retry later, answer 503).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored chunk of series {series_id} at {chunk_start} is unreadable: {source}")]
    Corrupt {
        series_id: i64,
        chunk_start: i64,
        source: codec::CodecError,
    },
    #[error("concurrent writers kept colliding on the same chunks")]
    Contention,
    #[error("a background task failed: {0}")]
    Task(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
                    matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
                }) =>
            {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Partitions this process has already made sure of, so the hot write path skips the DDL call.
    known_partitions: Arc<Mutex<HashSet<(&'static str, i64)>>>,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Store {
    /// Connects lazily: the pool opens connections when first used, so a daemon can start while the
    /// database is still coming up; `ping` tells whether it is reachable.
    pub fn connect_lazy(opts: &ConnectOptions) -> Result<Self> {
        let connect: PgConnectOptions = opts.url.parse().map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_lazy_with(
                connect
                    .application_name("headroom")
                    // Many reads take optional filters (`$1 is null or col = $1`); a generic plan cannot
                    // use an index for them, so plan each execution with its actual values.
                    .options([("plan_cache_mode", "force_custom_plan")]),
            );
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            known_partitions: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations; applying them again is a no-op. Returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.applied_migrations().await.unwrap_or(0);
        MIGRATOR.run(&self.pool).await?;
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize> {
        let exists: Option<String> =
            sqlx::query_scalar("select to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
                .await?;
        if exists.is_none() {
            return Ok(0);
        }
        let n: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as usize)
    }

    /// A cheap round trip, for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}
