//! Prometheus textfile output for the batch jobs (node_exporter's textfile collector):
//! each run writes its result, duration, bytes and timestamps, atomically (a temp file
//! renamed over the old one), so an alert can fire on a failed or stale backup or drill.
//!
//! The last success timestamp survives a failed run: it is carried over from the file
//! the previous run wrote.

use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;

/// One job run, as the textfile reports it.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    /// Metric name prefix: `dob_backup`, `dob_restore`, `dob_restore_drill`.
    pub job: &'static str,
    pub success: bool,
    /// Unix seconds when the run finished.
    pub finished_unix: f64,
    pub duration_seconds: f64,
    pub bytes: u64,
    /// Extra gauges (`name`, help, value), e.g. RPO and RTO for a drill.
    pub extra: Vec<(&'static str, &'static str, f64)>,
}

impl JobMetrics {
    /// The textfile contents; `previous` is the old file, for the last success time.
    pub fn render(&self, previous: Option<&str>) -> String {
        let job = self.job;
        let last_success_name = format!("{job}_last_success_timestamp_seconds");
        let last_success = if self.success {
            Some(self.finished_unix)
        } else {
            previous.and_then(|text| read_gauge(text, &last_success_name))
        };
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {job}_{name} {help}");
            let _ = writeln!(out, "# TYPE {job}_{name} gauge");
            let _ = writeln!(out, "{job}_{name} {value}");
        };
        gauge(
            "success",
            "1 if the last run succeeded (verification included), else 0.",
            if self.success { 1.0 } else { 0.0 },
        );
        gauge(
            "last_run_timestamp_seconds",
            "When the last run finished (Unix time).",
            self.finished_unix,
        );
        if let Some(ts) = last_success {
            gauge(
                "last_success_timestamp_seconds",
                "When the last successful run finished (Unix time).",
                ts,
            );
        }
        gauge(
            "duration_seconds",
            "How long the last run took.",
            self.duration_seconds,
        );
        gauge(
            "bytes",
            "Bytes of dump handled by the last run.",
            self.bytes as f64,
        );
        for (name, help, value) in &self.extra {
            gauge(name, help, *value);
        }
        out
    }

    /// Writes the textfile at `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let previous = std::fs::read_to_string(path).ok();
        let text = self.render(previous.as_deref());
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "metrics".into());
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })
    }
}

fn read_gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(success: bool, at: f64) -> JobMetrics {
        JobMetrics {
            job: "dob_backup",
            success,
            finished_unix: at,
            duration_seconds: 2.5,
            bytes: 1024,
            extra: vec![],
        }
    }

    #[test]
    fn a_success_records_its_time() {
        let text = run(true, 100.0).render(None);
        assert!(text.contains("dob_backup_success 1\n"), "{text}");
        assert!(text.contains("dob_backup_last_success_timestamp_seconds 100\n"));
        assert!(text.contains("dob_backup_bytes 1024\n"));
    }

    #[test]
    fn a_failure_keeps_the_previous_success_time() {
        let before = run(true, 100.0).render(None);
        let text = run(false, 200.0).render(Some(&before));
        assert!(text.contains("dob_backup_success 0\n"), "{text}");
        assert!(text.contains("dob_backup_last_success_timestamp_seconds 100\n"));
        assert!(text.contains("dob_backup_last_run_timestamp_seconds 200\n"));
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("dob-textfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("backup.prom");
        run(true, 1.0).write(&path).unwrap();
        run(false, 2.0).write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("dob_backup_last_success_timestamp_seconds 1\n"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
