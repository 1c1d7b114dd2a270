//! One file's unsynced contents: the writes and truncations made since its last fsync, kept
//! as whole pages over the backing file.
//!
//! Invariant: what a reader sees is the backing file, cut to `floor` (every byte at or past the
//! smallest size the file had since its last flush is gone), overlaid by the cached pages, cut
//! to `size`. `floor <= size` holds at all times, and cached bytes past `size` are zero, so
//! growing the file shows zeros as it must. [`PageCache::flush`] writes exactly that view to
//! the backing file; dropping the cache instead is the crash.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Pages are the unit of caching; a partial write reads the rest of its page from the backing
/// file first.
const PAGE: u64 = 4096;

#[derive(Debug)]
pub struct PageCache {
    /// The file's logical size.
    size: u64,
    /// Backing bytes at or past this offset were truncated away since the last flush.
    floor: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl PageCache {
    /// A cache over a backing file of `backing_len` bytes, with nothing cached yet.
    pub fn new(backing_len: u64) -> PageCache {
        PageCache {
            size: backing_len,
            floor: backing_len,
            pages: BTreeMap::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory that a crash would drop.
    pub fn dirty_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(data.len() - done);
            let page = self.page_mut(backing, index)?;
            page[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        self.size = self.size.max(offset + data.len() as u64);
        Ok(())
    }

    /// `ftruncate` in memory: shrinking forgets the bytes past `len`, growing shows zeros.
    pub fn truncate(&mut self, len: u64) {
        if len < self.size {
            let first_gone = len.div_ceil(PAGE);
            self.pages.split_off(&first_gone);
            if let Some(page) = self.pages.get_mut(&(len / PAGE)) {
                page[(len % PAGE) as usize..].fill(0);
            }
            self.floor = self.floor.min(len);
        }
        self.size = len;
    }

    pub fn read(&self, backing: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let (index, within) = (at / PAGE, (at % PAGE) as usize);
            let n = ((PAGE as usize - within) as u64).min(end - at) as usize;
            match self.pages.get(&index) {
                Some(page) => out.extend_from_slice(&page[within..within + n]),
                None => {
                    let page = self.load(backing, index)?;
                    out.extend_from_slice(&page[within..within + n]);
                }
            }
            at += n as u64;
        }
        Ok(out)
    }

    /// Writes the logical contents to `backing` (without syncing it: the caller picks fsync or
    /// fdatasync). The cache must be dropped afterwards: it no longer differs from the file.
    pub fn flush(&self, backing: &File) -> io::Result<()> {
        // Cut first, so that a region truncated and then grown again reads as zeros.
        if self.floor < backing.metadata()?.len() {
            backing.set_len(self.floor)?;
        }
        for (&index, page) in &self.pages {
            let start = index * PAGE;
            if start >= self.size {
                break;
            }
            let n = (self.size - start).min(PAGE) as usize;
            backing.write_all_at(&page[..n], start)?;
        }
        backing.set_len(self.size)
    }

    fn page_mut(&mut self, backing: &File, index: u64) -> io::Result<&mut Box<[u8]>> {
        if !self.pages.contains_key(&index) {
            let page = self.load(backing, index)?;
            self.pages.insert(index, page);
        }
        // Inserted just above when it was missing.
        Ok(self.pages.get_mut(&index).expect("page present"))
    }

    /// Page `index` as the backing file holds it, zero past `floor` and past its end.
    fn load(&self, backing: &File, index: u64) -> io::Result<Box<[u8]>> {
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        if start < self.floor {
            let want = (self.floor - start).min(PAGE) as usize;
            let mut got = 0;
            while got < want {
                match backing.read_at(&mut page[got..want], start + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backing(content: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, file)
    }

    fn contents(file: &File) -> Vec<u8> {
        let mut out = vec![0; file.metadata().unwrap().len() as usize];
        file.read_exact_at(&mut out, 0).unwrap();
        out
    }

    #[test]
    fn writes_overlay_the_backing_file_until_flushed() {
        let (_dir, file) = backing(b"hello world");
        let mut cache = PageCache::new(11);
        cache.write(&file, 6, b"there, friend").unwrap();
        assert_eq!(cache.read(&file, 0, 100).unwrap(), b"hello there, friend");
        assert_eq!(contents(&file), b"hello world", "backing untouched");
        cache.flush(&file).unwrap();
        assert_eq!(contents(&file), b"hello there, friend");
    }

    #[test]
    fn shrink_then_grow_reads_zeros_not_the_old_bytes() {
        let content: Vec<u8> = (0..3 * PAGE).map(|i| (i % 251) as u8 + 1).collect();
        let (_dir, file) = backing(&content);
        let mut cache = PageCache::new(content.len() as u64);
        cache.truncate(10);
        cache.truncate(2 * PAGE + 5);
        cache.write(&file, 2 * PAGE, b"x").unwrap();
        let seen = cache.read(&file, 0, usize::MAX >> 1).unwrap();
        assert_eq!(seen.len() as u64, 2 * PAGE + 5);
        assert_eq!(&seen[..10], &content[..10]);
        assert!(seen[10..2 * PAGE as usize].iter().all(|&b| b == 0));
        assert_eq!(&seen[2 * PAGE as usize..], b"x\0\0\0\0");
        cache.flush(&file).unwrap();
        assert_eq!(contents(&file), seen, "flush writes exactly the view");
    }
}
