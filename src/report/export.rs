//! Stored reports written as files to `reports.directory`: one file per stored format, named after the
//! scope, the day and the stored report's id. A file is written under a temporary name, synced, then
//! renamed, so it is never half-written and writing it again replaces it with the same bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::{Store, StoreError, StoredReport};

/// Reports exported per check at most, so a long backlog does not hold the report lock for long.
const BATCH: i64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write report file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("report directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ExportError {
    /// The path at fault, for the log line.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ExportError::Io { path, .. } | ExportError::NotADirectory { path } => Some(path),
            ExportError::Store(_) => None,
        }
    }
}

/// `headroom-fleet-2026-11-29-42.html`: scope (characters outside `[A-Za-z0-9._-]` become `-`), day of
/// generation (UTC) and id of the stored report, whose format gives the extension.
pub fn file_name(r: &StoredReport) -> String {
    let scope: String = r
        .scope
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "headroom-{scope}-{}-{}.{}",
        super::text::date(r.generated_at),
        r.id,
        r.format
    )
}

/// Writes `content` to `dir/name` atomically. The directory must exist: it is never created, so a volume
/// that is not mounted is reported instead of filled on the wrong disk.
pub fn write_file(dir: &Path, name: &str, content: &[u8]) -> Result<PathBuf, ExportError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(ExportError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(ExportError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let io = |source| ExportError::Io {
        path: path.clone(),
        source,
    };
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(path)
}

/// What one export pass did.
#[derive(Debug, Default)]
pub struct ExportOutcome {
    /// Files written, in order.
    pub written: Vec<PathBuf>,
    /// Why the pass stopped early: the reports not written yet stay pending for the next pass.
    pub error: Option<ExportError>,
}

/// Writes the files of every report waiting for export (oldest first), clearing each one's pending mark
/// once its file is written. Stops at the first failure: what was written stays written, the rest stays
/// pending.
pub async fn export_pending(store: &Store, dir: &Path) -> ExportOutcome {
    let mut out = ExportOutcome::default();
    if let Err(e) = export_into(store, dir, &mut out.written).await {
        out.error = Some(e);
    }
    out
}

async fn export_into(
    store: &Store,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), ExportError> {
    loop {
        let pending = store.reports_pending_export(BATCH).await?;
        let n = pending.len() as i64;
        for id in pending {
            let Some((meta, content)) = store.report_content(id).await? else {
                continue; // deleted meanwhile: nothing to write
            };
            let dir = dir.to_path_buf();
            let name = file_name(&meta);
            let path = tokio::task::spawn_blocking(move || write_file(&dir, &name, &content))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
            store.mark_reports_exported(&[meta.id]).await?;
            written.push(path);
        }
        if n < BATCH {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(scope: &str, format: &str) -> StoredReport {
        StoredReport {
            id: 42,
            scope: scope.into(),
            period_start: 0,
            period_end: 86_400,
            format: format.into(),
            generated_at: 1_704_067_200,
            bytes: 3,
        }
    }

    #[test]
    fn file_names_carry_scope_day_id_and_format_and_stay_inside_the_directory() {
        assert_eq!(
            file_name(&stored("fleet", "html")),
            "headroom-fleet-2024-01-01-42.html"
        );
        assert_eq!(
            file_name(&stored("team:../../etc", "csv")),
            "headroom-team-..-..-etc-2024-01-01-42.csv"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it_and_is_not_created() {
        let dir = std::env::temp_dir().join(format!("headroom-export-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let missing = dir.join("absent");
        let e = write_file(&missing, "a.md", b"abc").unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
        assert!(!missing.exists());
        std::fs::create_dir_all(&missing).unwrap();
        let path = write_file(&missing, "a.md", b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        // Writing again replaces the file; no temporary file is left behind.
        write_file(&missing, "a.md", b"abc").unwrap();
        assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
