//! The write-ahead log that holds the Raft log: preallocated segment files of checksummed
//! records, synced by the caller once per group commit.
//!
//! Layout: `<dir>/<first index, 20 digits>.wal`, each preallocated to the segment size. A
//! record is a 16-byte header — payload length (u32 LE), CRC-32 of index and payload (u32 LE),
//! log index (u64 LE) — followed by the payload. An all-zero header marks the end of a
//! segment's data (preallocated space reads as zeros).
//!
//! Invariants:
//! - An append is acknowledged only after fdatasync of every segment it touched and fsync of the
//!   directory if a segment was created ([`Wal::take_unsynced`] hands the caller exactly that
//!   set; [`PendingSync::run`] performs it).
//! - Indexes are contiguous above the purge point; open refuses a gap.
//! - A bad record in the last segment followed only by zeros is a torn tail (written after the
//!   last sync, so never acknowledged): open cuts it off and reports it. Any other bad record —
//!   mid-segment, in an older segment, or out of order — is corruption: open fails with an
//!   error naming the file and offset, and the node does not start.
//! - Truncate removes whole segments newest first, then cuts the containing one, syncing each
//!   step, so a crash at any point leaves a prefix of the old log. Purge deletes only segments
//!   entirely at or below the purge point, whose marker the caller has made durable first.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::sync::SyncPolicy;

const HEADER: usize = 16;
const EXTENSION: &str = "wal";

/// Default size a segment is preallocated to.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("WAL corrupt: {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("WAL append of index {index} does not follow the last index {last:?}")]
    OutOfOrder { index: u64, last: Option<u64> },
}

impl WalError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WalError {
        let path = path.to_path_buf();
        move |source| WalError::Io { op, path, source }
    }

    /// Out of space (or quota): nothing was acknowledged, so the write may be retried once
    /// space returns. Every other error is final.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, WalError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }

    /// Converts for the openraft edge, keeping the message (file, offset, errno).
    pub fn into_io(self) -> io::Error {
        match self {
            WalError::Io { source, .. } if source.raw_os_error().is_some() => {
                io::Error::new(source.kind(), format!("{source}"))
            }
            other => io::Error::other(other.to_string()),
        }
    }
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Where the next record goes.
    end: u64,
    capacity: u64,
}

#[derive(Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

/// A bad tail cut off at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
}

/// The syncs owed for appends made so far; run without holding the WAL lock.
pub struct PendingSync {
    policy: SyncPolicy,
    files: Vec<(PathBuf, Arc<File>)>,
    dir: Option<PathBuf>,
}

impl PendingSync {
    pub fn run(&self) -> Result<(), WalError> {
        for (path, file) in &self.files {
            self.policy
                .sync_data(file)
                .map_err(WalError::io("fdatasync", path))?;
        }
        if let Some(dir) = &self.dir {
            self.policy
                .sync_dir(dir)
                .map_err(WalError::io("fsync dir", dir))?;
        }
        Ok(())
    }
}

pub struct Wal {
    dir: PathBuf,
    policy: SyncPolicy,
    segment_bytes: u64,
    /// By the index the segment's name carries (its first record's index).
    segments: BTreeMap<u64, Segment>,
    /// Index of `locations[0]`; meaningful only when `locations` is non-empty.
    first_index: u64,
    locations: VecDeque<Location>,
    unsynced: BTreeMap<u64, (PathBuf, Arc<File>)>,
    dir_unsynced: bool,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`. Records at or below `last_purged` are
    /// checked but not indexed. Returns the torn tail it cut off, if any.
    pub fn open(
        dir: &Path,
        policy: SyncPolicy,
        segment_bytes: u64,
        last_purged: Option<u64>,
    ) -> Result<(Wal, Option<TornTail>), WalError> {
        std::fs::create_dir_all(dir).map_err(WalError::io("create", dir))?;
        policy
            .sync_dir(dir)
            .map_err(WalError::io("fsync dir", dir))?;
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            policy,
            segment_bytes,
            segments: BTreeMap::new(),
            first_index: 0,
            locations: VecDeque::new(),
            unsynced: BTreeMap::new(),
            dir_unsynced: false,
        };
        let names = segment_names(dir)?;
        let mut torn = None;
        let mut previous: Option<u64> = None;
        for (position, (first, path)) in names.iter().enumerate() {
            let is_last = position + 1 == names.len();
            let scanned = scan_segment(path, *first, is_last, &mut previous, last_purged)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(WalError::io("open", path))?;
            let capacity = scanned.file_len.max(segment_bytes);
            if let Some(offset) = scanned.torn_at {
                cut(&file, offset, capacity, policy)
                    .map_err(WalError::io("cut torn tail", path))?;
                torn = Some(TornTail {
                    path: path.clone(),
                    offset,
                });
            }
            for (index, offset, len) in scanned.records {
                if last_purged.is_some_and(|p| index <= p) {
                    continue;
                }
                wal.push_location(
                    index,
                    Location {
                        segment: *first,
                        offset,
                        len,
                    },
                );
            }
            wal.segments.insert(
                *first,
                Segment {
                    path: path.clone(),
                    file: Arc::new(file),
                    end: scanned.end,
                    capacity,
                },
            );
        }
        if let (Some(purged), Some(first)) = (last_purged, wal.first_live_index()) {
            if first != purged + 1 {
                let (segment, location) = wal
                    .locate(first)
                    .map(|l| (l.segment, l.offset))
                    .unwrap_or_default();
                return Err(WalError::Corrupt {
                    path: wal.segment_path(segment),
                    offset: location,
                    reason: format!("log resumes at index {first} after purge point {purged}"),
                });
            }
        }
        Ok((wal, torn))
    }

    pub fn first_live_index(&self) -> Option<u64> {
        (!self.locations.is_empty()).then_some(self.first_index)
    }

    pub fn last_index(&self) -> Option<u64> {
        (!self.locations.is_empty()).then(|| self.first_index + self.locations.len() as u64 - 1)
    }

    fn push_location(&mut self, index: u64, location: Location) {
        if self.locations.is_empty() {
            self.first_index = index;
        }
        self.locations.push_back(location);
    }

    fn locate(&self, index: u64) -> Option<Location> {
        let offset = index.checked_sub(self.first_index)?;
        self.locations.get(usize::try_from(offset).ok()?).copied()
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.{EXTENSION}"))
    }

    /// Writes one record. Not durable until the caller runs [`Wal::take_unsynced`]'s sync.
    /// On error nothing is indexed, so the same append may be retried.
    pub fn append(&mut self, index: u64, payload: &[u8]) -> Result<(), WalError> {
        let last = self.last_index();
        if last.is_some_and(|l| index != l + 1) {
            return Err(WalError::OutOfOrder { index, last });
        }
        let record = encode_record(index, payload);
        let record_len = record.len() as u64;
        let needs_new = match self.segments.last_key_value() {
            Some((_, segment)) => segment.end + record_len > segment.capacity,
            None => true,
        };
        if needs_new {
            self.create_segment(index, record_len)?;
        }
        let (&first, segment) = self
            .segments
            .last_key_value()
            .expect("a segment exists: one was just created if there was none");
        segment
            .file
            .write_all_at(&record, segment.end)
            .map_err(WalError::io("write", &segment.path))?;
        let location = Location {
            segment: first,
            offset: segment.end,
            len: payload.len() as u32,
        };
        self.unsynced
            .insert(first, (segment.path.clone(), segment.file.clone()));
        if let Some(segment) = self.segments.get_mut(&first) {
            segment.end += record_len;
        }
        self.push_location(index, location);
        Ok(())
    }

    fn create_segment(&mut self, first: u64, min_capacity: u64) -> Result<(), WalError> {
        let path = self.segment_path(first);
        let capacity = self.segment_bytes.max(min_capacity);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(WalError::io("create", &path))?;
        if let Err(source) = preallocate(&file, capacity) {
            // Leave no half-made segment behind: the append will be retried from scratch.
            let _ = std::fs::remove_file(&path);
            return Err(WalError::Io {
                op: "preallocate",
                path,
                source,
            });
        }
        self.dir_unsynced = true;
        let file = Arc::new(file);
        self.unsynced.insert(first, (path.clone(), file.clone()));
        self.segments.insert(
            first,
            Segment {
                path,
                file,
                end: 0,
                capacity,
            },
        );
        Ok(())
    }

    /// Hands over the syncs owed for every append so far (one group commit).
    pub fn take_unsynced(&mut self) -> PendingSync {
        let files = std::mem::take(&mut self.unsynced).into_values().collect();
        let dir = std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone());
        PendingSync {
            policy: self.policy,
            files,
            dir,
        }
    }

    /// Reads the payload at `index`, checking its CRC again.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>, WalError> {
        let Some(location) = self.locate(index) else {
            return Ok(None);
        };
        let segment = &self.segments[&location.segment];
        let mut record = vec![0u8; HEADER + location.len as usize];
        segment
            .file
            .read_exact_at(&mut record, location.offset)
            .map_err(WalError::io("read", &segment.path))?;
        match decode_record(&record) {
            Some((found, payload)) if found == index => Ok(Some(payload.to_vec())),
            _ => Err(WalError::Corrupt {
                path: segment.path.clone(),
                offset: location.offset,
                reason: format!("record of index {index} changed on disk since open"),
            }),
        }
    }

    /// Removes every record at or above `from`, durably, before returning.
    pub fn truncate(&mut self, from: u64) -> Result<(), WalError> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        if from > last {
            return Ok(());
        }
        let keep = from.saturating_sub(self.first_index) as usize;
        let cut_at = self.locations[keep];
        self.locations.truncate(keep);
        // Newest first, so a crash in between leaves a prefix of the old log.
        let doomed: Vec<u64> = self
            .segments
            .range(cut_at.segment + 1..)
            .map(|(first, _)| *first)
            .rev()
            .collect();
        for first in doomed {
            self.remove_segment(first)?;
        }
        let segment = self
            .segments
            .get_mut(&cut_at.segment)
            .expect("the cut record's segment is indexed");
        cut(&segment.file, cut_at.offset, segment.capacity, self.policy)
            .map_err(WalError::io("truncate", &segment.path))?;
        segment.end = cut_at.offset;
        Ok(())
    }

    /// Deletes the segments whose records are all at or below `upto`. The caller must have
    /// made the purge point durable first: after a crash, open skips what it covers.
    pub fn purge(&mut self, upto: u64) -> Result<(), WalError> {
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for pair in firsts.windows(2) {
            // A segment holds indexes below its successor's first one.
            if pair[1] <= upto + 1 {
                self.remove_segment(pair[0])?;
            }
        }
        while self.first_index <= upto && !self.locations.is_empty() {
            self.locations.pop_front();
            self.first_index += 1;
        }
        Ok(())
    }

    fn remove_segment(&mut self, first: u64) -> Result<(), WalError> {
        if let Some(segment) = self.segments.remove(&first) {
            self.unsynced.remove(&first);
            std::fs::remove_file(&segment.path).map_err(WalError::io("remove", &segment.path))?;
            self.policy
                .sync_dir(&self.dir)
                .map_err(WalError::io("fsync dir", &self.dir))?;
        }
        Ok(())
    }
}

fn encode_record(index: u64, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&checksum(index, payload).to_le_bytes());
    record.extend_from_slice(&index.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// `(index, payload)` if `record` is a whole record with a matching checksum.
fn decode_record(record: &[u8]) -> Option<(u64, &[u8])> {
    let header = record.get(..HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let index = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let payload = record.get(HEADER..HEADER + len)?;
    (checksum(index, payload) == crc).then_some((index, payload))
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&index.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Zeroes `file` from `offset` to its end and keeps it preallocated to `capacity`, durably.
fn cut(file: &File, offset: u64, capacity: u64, policy: SyncPolicy) -> io::Result<()> {
    file.set_len(offset)?;
    preallocate(file, capacity)?;
    policy.sync_data(file)
}

/// Reserves `len` bytes so later writes into the segment cannot fail for lack of space.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: plain syscall on a file descriptor we own for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate (some FUSE ones): extend sparsely instead.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len as u64),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

fn segment_names(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(WalError::io("list", dir))? {
        let path = entry.map_err(WalError::io("list", dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        let first = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| WalError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "segment name is not an index".into(),
            })?;
        names.push((first, path));
    }
    names.sort();
    Ok(names)
}

struct Scanned {
    records: Vec<(u64, u64, u32)>,
    end: u64,
    file_len: u64,
    torn_at: Option<u64>,
}

/// Checks every record of one segment; see the module invariants for torn vs corrupt.
fn scan_segment(
    path: &Path,
    first: u64,
    is_last: bool,
    previous: &mut Option<u64>,
    last_purged: Option<u64>,
) -> Result<Scanned, WalError> {
    let bytes = std::fs::read(path).map_err(WalError::io("read", path))?;
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut torn_at = None;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let header_len = rest.len().min(HEADER);
        if rest[..header_len].iter().all(|b| *b == 0) {
            if rest.iter().any(|b| *b != 0) {
                if !is_last {
                    return Err(corrupt(offset, "data after the end of the segment".into()));
                }
                torn_at = Some(offset);
            }
            break;
        }
        if rest.len() < HEADER {
            return Err(corrupt(offset, "truncated record header".into()));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        if HEADER + len > rest.len() {
            return Err(corrupt(
                offset,
                format!("record length {len} runs past the file end"),
            ));
        }
        let Some((index, _)) = decode_record(&rest[..HEADER + len]) else {
            let after_is_zero = rest[HEADER + len..].iter().all(|b| *b == 0);
            if is_last && after_is_zero {
                torn_at = Some(offset);
                break;
            }
            return Err(corrupt(offset, "checksum mismatch".into()));
        };
        // Below the purge point a gap is allowed: a purge past the end of the log leaves old
        // records in the active segment, and the log resumes right after the purge point.
        let expected = match (*previous, last_purged) {
            (None, _) => first,
            (Some(p), Some(purged)) if p <= purged && index <= purged + 1 => index,
            (Some(p), _) => p + 1,
        };
        if index != expected || (records.is_empty() && index != first) {
            return Err(corrupt(
                offset,
                format!("record has index {index}, expected {expected}"),
            ));
        }
        records.push((index, offset as u64, len as u32));
        *previous = Some(index);
        offset += HEADER + len;
    }
    Ok(Scanned {
        records,
        end: torn_at.unwrap_or(offset) as u64,
        file_len: bytes.len() as u64,
        torn_at: torn_at.map(|offset| offset as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small segments so a handful of records spans several files.
    const SEGMENT: u64 = 256;

    fn payload(index: u64) -> Vec<u8> {
        format!("entry number {index} with some padding to fill segments").into_bytes()
    }

    fn open(dir: &Path, last_purged: Option<u64>) -> Result<(Wal, Option<TornTail>), WalError> {
        Wal::open(dir, SyncPolicy::Durable, SEGMENT, last_purged)
    }

    fn append_synced(wal: &mut Wal, indexes: std::ops::RangeInclusive<u64>) {
        for index in indexes {
            wal.append(index, &payload(index)).expect("append");
        }
        wal.take_unsynced().run().expect("sync");
    }

    fn assert_holds(wal: &Wal, indexes: std::ops::RangeInclusive<u64>) {
        assert_eq!(wal.first_live_index(), Some(*indexes.start()));
        assert_eq!(wal.last_index(), Some(*indexes.end()));
        for index in indexes {
            assert_eq!(
                wal.read(index).expect("read"),
                Some(payload(index)),
                "index {index}"
            );
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        segment_names(dir)
            .expect("list")
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    fn flip_byte(path: &Path, offset: u64) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open");
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, offset).expect("read byte");
        file.write_all_at(&[byte[0] ^ 0x40], offset)
            .expect("write byte");
    }

    #[test]
    fn records_spanning_several_segments_read_back_after_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, torn) = open(dir.path(), None).expect("open");
        assert_eq!(torn, None);
        append_synced(&mut wal, 0..=20);
        assert!(
            segment_files(dir.path()).len() >= 4,
            "small segments must roll over"
        );
        drop(wal);
        let (wal, torn) = open(dir.path(), None).expect("reopen");
        assert_eq!(torn, None);
        assert_holds(&wal, 0..=20);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_log_continues() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=6);
        let last = wal.locate(6).expect("indexed");
        let path = wal.segment_path(last.segment);
        drop(wal);
        // The last record's payload half-written: its checksum fails, zeros follow.
        flip_byte(&path, last.offset + HEADER as u64 + 3);

        let (mut wal, torn) = open(dir.path(), None).expect("a torn tail is not corruption");
        assert_eq!(
            torn,
            Some(TornTail {
                path: path.clone(),
                offset: last.offset
            })
        );
        assert_holds(&wal, 1..=5);
        append_synced(&mut wal, 6..=9);
        drop(wal);
        let (wal, torn) = open(dir.path(), None).expect("reopen after the cut");
        assert_eq!(torn, None);
        assert_holds(&wal, 1..=9);
    }

    #[test]
    fn a_flipped_byte_mid_segment_is_corruption_naming_file_and_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=12);
        let last_segment = wal.locate(12).expect("indexed").segment;
        let first_in_last = wal.locate(last_segment).expect("indexed");
        assert_eq!(first_in_last.offset, 0);
        let path = wal.segment_path(last_segment);
        drop(wal);
        // A record of the last segment with valid records after it.
        flip_byte(&path, HEADER as u64 + 1);
        match open(dir.path(), None) {
            Err(WalError::Corrupt {
                path: found,
                offset,
                ..
            }) => {
                assert_eq!(found, path);
                assert_eq!(offset, 0);
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a corrupt record mid-segment was accepted"),
        }
    }

    #[test]
    fn a_bad_last_record_of_an_older_segment_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=12);
        let first_segment = *wal.segments.keys().next().expect("segments");
        let next_segment = *wal.segments.keys().nth(1).expect("two segments");
        let last_of_first = wal.locate(next_segment - 1).expect("indexed");
        assert_eq!(last_of_first.segment, first_segment);
        drop(wal);
        let path = dir.path().join(format!("{first_segment:020}.wal"));
        flip_byte(&path, last_of_first.offset + HEADER as u64);
        let error = open(dir.path(), None).err().expect("must refuse");
        assert!(
            matches!(&error, WalError::Corrupt { path: p, offset, .. }
                if *p == path && *offset == last_of_first.offset),
            "{error}"
        );
        assert!(error.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn a_missing_middle_segment_is_a_gap_and_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=20);
        drop(wal);
        let files = segment_files(dir.path());
        std::fs::remove_file(&files[1]).expect("remove");
        let error = open(dir.path(), None).err().expect("must refuse a gap");
        assert!(
            matches!(&error, WalError::Corrupt { path, .. } if *path == files[2]),
            "{error}"
        );
    }

    #[test]
    fn truncate_across_a_segment_boundary_survives_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=20);
        let before = segment_files(dir.path()).len();
        // Cut in the second segment: every later segment goes.
        let second = *wal.segments.keys().nth(1).expect("two segments");
        wal.truncate(second + 1).expect("truncate");
        assert_holds(&wal, 1..=second);
        assert_eq!(segment_files(dir.path()).len(), 2, "was {before}");
        drop(wal);

        let (mut wal, torn) = open(dir.path(), None).expect("reopen after truncate");
        assert_eq!(torn, None);
        assert_holds(&wal, 1..=second);
        append_synced(&mut wal, second + 1..=25);
        drop(wal);
        let (wal, _) = open(dir.path(), None).expect("reopen after new appends");
        assert_holds(&wal, 1..=25);
    }

    #[test]
    fn truncate_at_a_segment_start_leaves_an_empty_segment_to_refill() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=20);
        let third = *wal.segments.keys().nth(2).expect("three segments");
        wal.truncate(third).expect("truncate");
        assert_holds(&wal, 1..=third - 1);
        append_synced(&mut wal, third..=third + 2);
        drop(wal);
        let (wal, _) = open(dir.path(), None).expect("reopen");
        assert_holds(&wal, 1..=third + 2);
    }

    #[test]
    fn purge_deletes_only_segments_wholly_below_the_purge_point() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=20);
        let third = *wal.segments.keys().nth(2).expect("three segments");
        let purge_at = third + 1;
        wal.purge(purge_at).expect("purge");
        let files = segment_files(dir.path());
        assert_eq!(
            files[0],
            wal.segment_path(third),
            "segments before the third go"
        );
        assert_holds(&wal, purge_at + 1..=20);
        drop(wal);

        let (wal, _) = open(dir.path(), Some(purge_at)).expect("reopen after purge");
        assert_holds(&wal, purge_at + 1..=20);
    }

    #[test]
    fn purge_past_the_end_then_appending_survives_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=3);
        // A snapshot far ahead of the log was installed: the log restarts after it.
        wal.purge(100).expect("purge");
        assert_eq!(wal.last_index(), None);
        append_synced(&mut wal, 101..=104);
        drop(wal);
        let (wal, _) = open(dir.path(), Some(100)).expect("reopen");
        assert_holds(&wal, 101..=104);
        // Without the purge point the same files show a gap: the marker is what makes it safe.
        drop(wal);
        assert!(matches!(
            open(dir.path(), None),
            Err(WalError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_append_that_skips_an_index_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = open(dir.path(), None).expect("open");
        append_synced(&mut wal, 1..=3);
        assert!(matches!(
            wal.append(5, b"x"),
            Err(WalError::OutOfOrder {
                index: 5,
                last: Some(3)
            })
        ));
    }
}
