//! Assessment claims: batches of containers per cycle, claimed by one replica at a time under a lease.

use super::assess::ContainerResult;
use super::{Result, Store, StoreError};

/// A batch this replica holds.
#[derive(Debug, Clone)]
pub struct Claim {
    pub cycle: i64,
    pub batch_start: i64,
    pub token: i64,
}

impl Store {
    /// Makes the batches of `cycle` (idempotent: every replica may call it). Returns how many exist.
    pub async fn open_cycle(&self, cycle: i64, batch: i64) -> Result<i64> {
        sqlx::query!(
            r#"insert into assess_claim (cycle, batch_start)
               select distinct $1::bigint, (c.id / $2) * $2 from container c
               on conflict do nothing"#,
            cycle,
            batch
        )
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar!(
            r#"select count(*) as "n!" from assess_claim where cycle = $1"#,
            cycle
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Claims one open batch of `cycle` whose lease is free or expired.
    pub async fn claim_batch(
        &self,
        cycle: i64,
        me: &str,
        lease_secs: i64,
    ) -> Result<Option<Claim>> {
        let row = sqlx::query!(
            r#"update assess_claim a
               set claimed_by = $2, token = nextval('assess_claim_token'),
                   lease_until = now() + make_interval(secs => $3), attempts = a.attempts + 1
               where (a.cycle, a.batch_start) = (
                   select cycle, batch_start from assess_claim
                   where cycle = $1 and done_at is null and (lease_until is null or lease_until < now())
                   order by batch_start
                   limit 1
                   for update skip locked)
               returning a.batch_start, a.token as "token!""#,
            cycle,
            me,
            lease_secs as f64
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Claim {
            cycle,
            batch_start: r.batch_start,
            token: r.token,
        }))
    }

    /// Stores a batch's results and marks it done, atomically, if the claim still holds. `false` means
    /// the lease had expired and another replica took the batch: nothing was stored.
    pub async fn complete_batch(
        &self,
        claim: &Claim,
        results: &[ContainerResult],
        computed_at: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let held = sqlx::query_scalar!(
            r#"select 1 as "one!" from assess_claim
               where cycle = $1 and batch_start = $2 and token = $3 and done_at is null and lease_until >= now()
               for update"#,
            claim.cycle,
            claim.batch_start,
            claim.token
        )
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::insert_results(&mut tx, results, computed_at).await?;
        sqlx::query!(
            "update assess_claim set done_at = now() where cycle = $1 and batch_start = $2",
            claim.cycle,
            claim.batch_start
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives a batch back at once (shutdown): another replica need not wait for the lease.
    pub async fn release_batch(&self, claim: &Claim) -> Result<()> {
        sqlx::query!(
            "update assess_claim set lease_until = null where cycle = $1 and batch_start = $2 and token = $3 and done_at is null",
            claim.cycle,
            claim.batch_start,
            claim.token
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Batches of `cycle` not done yet.
    pub async fn open_batches(&self, cycle: i64) -> Result<i64> {
        sqlx::query_scalar!(
            r#"select count(*) as "n!" from assess_claim where cycle = $1 and done_at is null"#,
            cycle
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from)
    }

    /// Containers of one batch (ids in `[start, start + size)`) with their series.
    pub async fn batch_targets(&self, start: i64, size: i64) -> Result<Vec<super::AssessTarget>> {
        let mut all = self.assess_targets(start - 1, size).await?;
        all.retain(|t| t.container_id < start + size);
        Ok(all)
    }
}
