//! Scrape high-water marks: per source and job, everything at or before the mark is stored.

use std::collections::HashMap;

use super::{Result, Store};

impl Store {
    /// The marks of one cluster's jobs, in Unix seconds.
    pub async fn scrape_marks(&self, cluster_id: i32) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query!(
            r#"select query_name, extract(epoch from high_water)::bigint as "high_water!"
               from scrape_mark where cluster_id = $1"#,
            cluster_id
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.query_name, r.high_water))
            .collect())
    }

    /// Moves a mark forward (never back: a late writer cannot undo a newer mark).
    pub async fn set_scrape_mark(&self, cluster_id: i32, job: &str, high_water: i64) -> Result<()> {
        sqlx::query!(
            r#"insert into scrape_mark (cluster_id, query_name, high_water)
               values ($1, $2, to_timestamp($3))
               on conflict (cluster_id, query_name)
               do update set high_water = greatest(scrape_mark.high_water, excluded.high_water), updated_at = now()"#,
            cluster_id,
            job,
            high_water as f64
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Extends `last_seen` of the workloads owning these containers.
    pub async fn touch_workloads(&self, container_ids: &[i64], seen_at: i64) -> Result<()> {
        sqlx::query!(
            r#"update workload set last_seen = greatest(last_seen, to_timestamp($2))
               where id in (select workload_id from container where id = any($1))"#,
            container_ids,
            seen_at as f64
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
