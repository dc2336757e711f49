//! Which workloads' details changed: the notifications the triggers of migration 0011 send when a change
//! commits, and the heartbeat a replica sends itself through the same server to know that it has received
//! every notification committed before the heartbeat was sent.

use sqlx::postgres::PgListener;

use super::{Result, Store};

/// Payload: comma-separated workload ids, or `*`.
const DETAIL_CHANNEL: &str = "headroom_detail";
/// Payload: whatever the sender chose, so it can recognise its own heartbeats.
const BEAT_CHANNEL: &str = "headroom_detail_beat";

/// A committed change, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailChange {
    /// The details of these workloads changed.
    Workloads(Vec<i64>),
    /// Anything may have changed.
    All,
    /// A heartbeat with its payload.
    Beat(String),
}

/// A dedicated connection listening for detail changes.
pub struct DetailChanges {
    listener: PgListener,
}

impl Store {
    /// Listens for detail changes on a connection of its own (taken from the pool for as long as it lives).
    pub async fn listen_detail_changes(&self) -> Result<DetailChanges> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([DETAIL_CHANNEL, BEAT_CHANNEL]).await?;
        Ok(DetailChanges { listener })
    }

    /// Sends a heartbeat; every listener receives it after every change committed before it.
    pub async fn send_detail_beat(&self, payload: &str) -> Result<()> {
        sqlx::query("select pg_notify($1, $2)")
            .bind(BEAT_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl DetailChanges {
    /// The next change. `Ok(None)`: the connection was lost and has been re-established, so changes
    /// committed in between are unknown.
    pub async fn next(&mut self) -> Result<Option<DetailChange>> {
        let Some(n) = self.listener.try_recv().await? else {
            return Ok(None);
        };
        Ok(Some(if n.channel() == BEAT_CHANNEL {
            DetailChange::Beat(n.payload().to_string())
        } else {
            parse_ids(n.payload())
        }))
    }
}

/// `1,2,3` → those workloads; `*` or anything unreadable → all of them (safe: only costs cache entries).
fn parse_ids(payload: &str) -> DetailChange {
    payload
        .split(',')
        .map(|s| s.trim().parse::<i64>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_or(DetailChange::All, DetailChange::Workloads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_workloads_or_everything() {
        assert_eq!(parse_ids("3,17"), DetailChange::Workloads(vec![3, 17]));
        assert_eq!(parse_ids("*"), DetailChange::All);
        assert_eq!(parse_ids("3,x"), DetailChange::All);
        assert_eq!(parse_ids(""), DetailChange::All);
    }
}
