//! openraft's storage conformance suite, run against the stores (WAL for the log, sled for
//! metadata, a file for the snapshot), plus the data-format version check.

use arbiter::raft_types::TypeConfig;
use arbiter::store::{self, LogStore, StateMachineStore, StoreError, StoreOptions};
use openraft::testing::{StoreBuilder, Suite};

struct StoresBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for StoresBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = store::open(dir.path(), StoreOptions::default()).expect("open stores");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_the_wal_and_sled_stores() {
    Suite::test_all(StoresBuilder).expect("storage suite");
}

#[test]
fn a_data_dir_from_another_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(store::open(dir.path(), StoreOptions::default()).expect("first open writes the version"));
    {
        // The stores' fsync thread lets go of the database a moment after they are dropped.
        let db = open_when_unlocked(&dir.path().join("sled"));
        db.insert("data_format_version", &999u32.to_be_bytes())
            .expect("tamper");
        db.flush().expect("flush");
    }
    let mut result = store::open(dir.path(), StoreOptions::default());
    for _ in 0..250 {
        // Retry only while the tampering handle still holds sled's file lock.
        if !matches!(result, Err(StoreError::Open { .. })) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        result = store::open(dir.path(), StoreOptions::default());
    }
    match result {
        Err(StoreError::FormatVersionMismatch {
            found, expected, ..
        }) => {
            assert_eq!(found, 999);
            assert_eq!(expected, store::DATA_FORMAT_VERSION);
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a mismatched format version was accepted"),
    }
}

fn open_when_unlocked(path: &std::path::Path) -> sled::Db {
    for _ in 0..250 {
        if let Ok(db) = sled::open(path) {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{} stayed locked for 5 s", path.display());
}
