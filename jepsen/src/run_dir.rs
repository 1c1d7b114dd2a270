//! Where a run's files go, and the few files that describe the run itself.
//!
//! Invariant: the default directory name sorts by start time and names the seed
//! (`jepsen/runs/20261127T114000Z-seed1`), so runs never overwrite each other and the seed to
//! replay one is in its name.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `jepsen/runs/<UTC timestamp>-seed<seed>` in this crate's source tree.
pub fn default_dir(seed: u64, now: SystemTime) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runs")
        .join(format!("{}-seed{seed}", utc_stamp(now)))
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn utc_stamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Where the `arbiter` binary is: `explicit` if given, else next to this executable (cargo
/// puts every binary of a workspace profile in the same directory).
pub fn locate_arbiter(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let candidate = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot tell where this executable is: {e}"))?;
            let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
            // Test binaries live one level down, in `deps/`.
            let dir = if dir.ends_with("deps") {
                dir.parent().map(Path::to_path_buf).unwrap_or(dir)
            } else {
                dir
            };
            dir.join("arbiter")
        }
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "arbiter binary not found at {}: build it first (`cargo build --release -p arbiter \
             -p arbiter-jepsen`) or pass --arbiter-bin",
            candidate.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_and_sortable() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_stamp(at(0)), "19700101T000000Z");
        // 2026-11-27 11:40:29 UTC.
        assert_eq!(utc_stamp(at(1_795_779_629)), "20261127T114029Z");
        // A leap day.
        assert_eq!(utc_stamp(at(951_782_400)), "20000229T000000Z");
        let dir = default_dir(7, at(0));
        assert!(
            dir.ends_with("runs/19700101T000000Z-seed7"),
            "{}",
            dir.display()
        );
    }
}
