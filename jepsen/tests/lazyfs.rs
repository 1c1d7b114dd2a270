//! lazyfs, mounted for real: what survives a crash is exactly what was fsynced, data and
//! directory entries alike.
//!
//! Needs root and /dev/fuse; without them every test says so and passes without checking.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use arbiter_jepsen::lazyfs::{LazyFs, Pending};

struct Mounted {
    // Dropped after `fs`, which unmounts first.
    fs: LazyFs,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    fn path(&self, name: &str) -> PathBuf {
        self.fs.mountpoint().join(name)
    }

    fn dir(&self) -> &Path {
        self.fs.mountpoint()
    }

    fn sync_dir(&self) {
        File::open(self.dir()).unwrap().sync_all().unwrap();
    }

    fn crash(&self) -> Pending {
        self.fs.crash().unwrap()
    }
}

/// A fresh lazyfs in a temp dir, or `None` (with the reason printed) where FUSE is unusable.
fn mount() -> Option<Mounted> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: lazyfs tests need root and /dev/fuse");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fs = LazyFs::mount(
        &tmp.path().join("mnt"),
        &tmp.path().join("store"),
        &["node.log"],
    )
    .unwrap();
    Some(Mounted { fs, _tmp: tmp })
}

/// A file that exists durably, empty: created, then its directory fsynced.
fn durable_empty(m: &Mounted, name: &str) -> PathBuf {
    let path = m.path(name);
    File::create(&path).unwrap().sync_all().unwrap();
    m.sync_dir();
    path
}

fn append(path: &Path, data: &[u8]) -> File {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(data).unwrap();
    file
}

#[test]
fn unsynced_write_is_gone_after_a_crash() {
    let Some(m) = mount() else { return };
    let path = durable_empty(&m, "log");
    append(&path, b"acknowledged?");
    assert_eq!(
        fs::read(&path).unwrap(),
        b"acknowledged?",
        "visible before the crash"
    );
    assert_eq!(m.fs.pending().dirty_files, 1);

    let dropped = m.crash();
    assert_eq!(dropped.dirty_files, 1);
    assert_eq!(fs::read(&path).unwrap(), b"", "dropped by the crash");
    assert_eq!(m.fs.pending(), Pending::default());
}

#[test]
fn fsynced_write_survives_a_crash() {
    let Some(m) = mount() else { return };
    let path = durable_empty(&m, "log");
    append(&path, b"durable").sync_data().unwrap();
    append(&path, b" and not");

    m.crash();
    assert_eq!(fs::read(&path).unwrap(), b"durable");
}

#[test]
fn fsync_of_another_handle_of_the_same_file_counts() {
    let Some(m) = mount() else { return };
    let path = durable_empty(&m, "log");
    let _writer = append(&path, b"written by one fd");
    File::open(&path).unwrap().sync_all().unwrap();

    m.crash();
    assert_eq!(fs::read(&path).unwrap(), b"written by one fd");
}

#[test]
fn a_file_fsynced_in_an_unsynced_directory_is_gone_after_a_crash() {
    let Some(m) = mount() else { return };
    let path = m.path("segment-1");
    let mut file = File::create(&path).unwrap();
    file.write_all(b"entries").unwrap();
    file.sync_all().unwrap();
    assert_eq!(m.fs.pending().dir_changes, 1);

    m.crash();
    assert!(!path.exists(), "its directory entry was never fsynced");

    // The same with the directory fsynced: file and contents stay.
    let mut file = File::create(&path).unwrap();
    file.write_all(b"entries").unwrap();
    file.sync_all().unwrap();
    m.sync_dir();
    m.crash();
    assert_eq!(fs::read(&path).unwrap(), b"entries");
}

#[test]
fn tmp_fsync_rename_fsync_dir_replaces_atomically_and_durably() {
    let Some(m) = mount() else { return };
    let target = m.path("vote");
    fs::write(&target, b"term 1").unwrap();
    File::open(&target).unwrap().sync_all().unwrap();
    m.sync_dir();

    // Renamed but the directory not fsynced: the old file is back after the crash.
    let write_tmp = |content: &[u8]| {
        let tmp = m.path("vote.tmp");
        let mut file = File::create(&tmp).unwrap();
        file.write_all(content).unwrap();
        file.sync_all().unwrap();
        tmp
    };
    fs::rename(write_tmp(b"term 2"), &target).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"term 2");
    m.crash();
    assert_eq!(fs::read(&target).unwrap(), b"term 1");
    assert!(!m.path("vote.tmp").exists());

    // The full pattern: tmp, fsync, rename, fsync dir.
    fs::rename(write_tmp(b"term 3"), &target).unwrap();
    m.sync_dir();
    m.crash();
    assert_eq!(fs::read(&target).unwrap(), b"term 3");
    assert_eq!(
        fs::read_dir(m.dir()).unwrap().count(),
        1,
        "only the vote file"
    );
}

#[test]
fn unlink_and_truncate_are_undone_unless_synced() {
    let Some(m) = mount() else { return };
    let keep = m.path("keep");
    fs::write(&keep, b"0123456789").unwrap();
    File::open(&keep).unwrap().sync_all().unwrap();
    m.sync_dir();

    OpenOptions::new()
        .write(true)
        .open(&keep)
        .unwrap()
        .set_len(3)
        .unwrap();
    assert_eq!(fs::read(&keep).unwrap(), b"012");
    m.crash();
    assert_eq!(
        fs::read(&keep).unwrap(),
        b"0123456789",
        "truncate was not synced"
    );

    fs::remove_file(&keep).unwrap();
    m.crash();
    assert_eq!(
        fs::read(&keep).unwrap(),
        b"0123456789",
        "unlink was not synced"
    );

    fs::remove_file(&keep).unwrap();
    m.sync_dir();
    m.crash();
    assert!(!keep.exists(), "unlink was synced");
}

#[test]
fn directory_changes_become_durable_in_order_and_bypass_files_always() {
    let Some(m) = mount() else { return };
    fs::create_dir(m.path("db")).unwrap();
    fs::write(m.path("db/conf"), b"x").unwrap();
    // The harness's log is outside the model: it survives without any fsync.
    fs::write(m.path("node.log"), b"started\n").unwrap();
    let dropped = m.crash();
    assert_eq!(dropped.dir_changes, 2, "{dropped:?}");
    assert!(!m.path("db").exists(), "nothing was fsynced");
    assert_eq!(fs::read(m.path("node.log")).unwrap(), b"started\n");

    // Metadata is committed in order, as a journalling filesystem does: fsyncing the inner
    // directory also makes the earlier mkdir of the outer one durable.
    fs::create_dir(m.path("db")).unwrap();
    fs::write(m.path("db/conf"), b"x").unwrap();
    File::open(m.path("db/conf")).unwrap().sync_all().unwrap();
    File::open(m.path("db")).unwrap().sync_all().unwrap();
    fs::write(m.path("later"), b"y").unwrap();
    m.crash();
    assert_eq!(fs::read(m.path("db/conf")).unwrap(), b"x");
    assert!(!m.path("later").exists(), "created after the fsync");
}

#[test]
fn clean_unmount_keeps_everything_in_the_mount_point() {
    let Some(m) = mount() else { return };
    fs::write(m.path("unsynced"), b"kept by a clean shutdown").unwrap();
    let mountpoint = m.dir().to_path_buf();
    let Mounted { fs: lazy, _tmp } = m;
    lazy.unmount().unwrap();
    assert_eq!(
        fs::read(mountpoint.join("unsynced")).unwrap(),
        b"kept by a clean shutdown"
    );
}
