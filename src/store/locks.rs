//! Session advisory locks: one holder at a time across replicas, released when the holder's connection
//! closes, so a replica that dies hands its work over without any coordinator.

use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use super::{Result, Store};

/// A held lock; `release` gives it back, dropping the guard closes nothing but returns the connection
/// to the pool with the lock still held, so always release.
pub struct LockGuard {
    conn: PoolConnection<Postgres>,
    key: String,
}

impl Store {
    /// Takes the lock named `key` if nobody holds it.
    pub async fn try_lock(&self, key: &str) -> Result<Option<LockGuard>> {
        let mut conn = self.pool.acquire().await?;
        let got = sqlx::query_scalar!(
            r#"select pg_try_advisory_lock(hashtext($1)) as "got!""#,
            key
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(got.then(|| LockGuard {
            conn,
            key: key.to_string(),
        }))
    }
}

impl LockGuard {
    pub async fn release(mut self) -> Result<()> {
        sqlx::query_scalar!(
            r#"select pg_advisory_unlock(hashtext($1)) as "released!""#,
            self.key
        )
        .fetch_one(&mut *self.conn)
        .await?;
        Ok(())
    }
}
