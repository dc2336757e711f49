//! Identities: clusters, workloads, containers and series. Every function is an idempotent upsert that
//! returns the row's id, so the scraper can call it for whatever it sees.

use super::{Result, Store};

/// A workload as the cluster names it: the owning controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    /// Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet (no owner) or Pod (bare).
    pub kind: String,
    pub name: String,
}

/// A container of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerKey {
    pub workload: WorkloadKey,
    pub container: String,
}

impl Store {
    pub async fn upsert_cluster(&self, name: &str) -> Result<i32> {
        let id = sqlx::query_scalar!(
            "insert into cluster (name) values ($1)
             on conflict (name) do update set name = excluded.name
             returning id",
            name
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Upserts workloads and their containers in one round trip each; returns container ids in input order.
    /// `seen_at` (Unix seconds) extends the workloads' `last_seen`.
    pub async fn upsert_containers(
        &self,
        cluster_id: i32,
        keys: &[ContainerKey],
        seen_at: i64,
    ) -> Result<Vec<i64>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let ns: Vec<&str> = keys.iter().map(|k| k.workload.namespace.as_str()).collect();
        let kind: Vec<&str> = keys.iter().map(|k| k.workload.kind.as_str()).collect();
        let name: Vec<&str> = keys.iter().map(|k| k.workload.name.as_str()).collect();
        let cont: Vec<&str> = keys.iter().map(|k| k.container.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            r#"insert into workload (cluster_id, namespace, kind, name, first_seen, last_seen)
               select distinct $1::int, n, k, w, to_timestamp($5), to_timestamp($5)
               from unnest($2::text[], $3::text[], $4::text[]) as t(n, k, w)
               order by 2, 3, 4
               on conflict (cluster_id, namespace, kind, name)
               do update set last_seen = greatest(workload.last_seen, excluded.last_seen),
                             first_seen = least(workload.first_seen, excluded.first_seen)"#,
            cluster_id,
            &ns as &[&str],
            &kind as &[&str],
            &name as &[&str],
            seen_at as f64
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"insert into container (workload_id, name)
               select distinct w.id, i.c
               from unnest($2::text[], $3::text[], $4::text[], $5::text[]) as i(n, k, w, c)
               join workload w on w.cluster_id = $1 and w.namespace = i.n and w.kind = i.k and w.name = i.w
               order by 1, 2
               on conflict (workload_id, name) do nothing"#,
            cluster_id,
            &ns as &[&str],
            &kind as &[&str],
            &name as &[&str],
            &cont as &[&str]
        )
        .execute(&mut *tx)
        .await?;
        let ids = sqlx::query_scalar!(
            r#"select ct.id as "id!"
               from unnest($2::text[], $3::text[], $4::text[], $5::text[]) with ordinality as i(n, k, w, c, ord)
               join workload w on w.cluster_id = $1 and w.namespace = i.n and w.kind = i.k and w.name = i.w
               join container ct on ct.workload_id = w.id and ct.name = i.c
               order by i.ord"#,
            cluster_id,
            &ns as &[&str],
            &kind as &[&str],
            &name as &[&str],
            &cont as &[&str]
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Upserts series of containers by metric name; returns their ids in input order.
    pub async fn upsert_series(&self, items: &[(i64, &str, &str)]) -> Result<Vec<i64>> {
        if items.is_empty() {
            return Ok(vec![]);
        }
        let container: Vec<i64> = items.iter().map(|i| i.0).collect();
        let metric: Vec<&str> = items.iter().map(|i| i.1).collect();
        let unit: Vec<&str> = items.iter().map(|i| i.2).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            r#"insert into series (container_id, metric, unit)
               select distinct c, m, u from unnest($1::bigint[], $2::text[], $3::text[]) as t(c, m, u)
               order by 1, 2
               on conflict (container_id, metric) do nothing"#,
            &container,
            &metric as &[&str],
            &unit as &[&str]
        )
        .execute(&mut *tx)
        .await?;
        let ids = sqlx::query_scalar!(
            r#"select s.id as "id!"
               from unnest($1::bigint[], $2::text[]) with ordinality as i(c, m, ord)
               join series s on s.container_id = i.c and s.metric = i.m
               order by i.ord"#,
            &container,
            &metric as &[&str]
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids)
    }
}
