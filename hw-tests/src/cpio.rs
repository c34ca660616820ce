//! A writer for uncompressed `newc` cpio archives, the initramfs format.
//!
//! Uncompressed on purpose: the guest's kernel runs under TCG emulation, where gunzipping
//! ~100 MiB of fio's shared libraries costs seconds per boot, while copying is cheap. The
//! kernel accepts several archives back to back, so a scenario's files are appended as a
//! second archive to the shared base image.

use std::collections::BTreeSet;
use std::io::Write;

const MODE_DIRECTORY: u32 = 0o040_000;
const MODE_REGULAR: u32 = 0o100_000;
const MODE_SYMLINK: u32 = 0o120_000;
const MODE_CHAR_DEVICE: u32 = 0o020_000;

/// Builds an archive in memory; parent directories are added automatically.
#[derive(Debug, Default)]
pub struct CpioArchive {
    bytes: Vec<u8>,
    next_inode: u32,
    directories: BTreeSet<String>,
}

struct Entry<'a> {
    path: &'a str,
    mode: u32,
    data: &'a [u8],
    device: (u32, u32),
}

impl CpioArchive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (and its parents) with mode 0755.
    pub fn directory(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.directories.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.directory(parent);
        }
        self.directories.insert(path.to_owned());
        self.entry(Entry {
            path,
            mode: MODE_DIRECTORY | 0o755,
            data: &[],
            device: (0, 0),
        });
    }

    /// Adds a regular file with the given permission bits (e.g. 0o755).
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) {
        let path = self.with_parent(path);
        self.entry(Entry {
            path: &path,
            mode: MODE_REGULAR | permissions,
            data,
            device: (0, 0),
        });
    }

    /// Adds a symbolic link `path -> target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = self.with_parent(path);
        self.entry(Entry {
            path: &path,
            mode: MODE_SYMLINK | 0o777,
            data: target.as_bytes(),
            device: (0, 0),
        });
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, path: &str, permissions: u32, major: u32, minor: u32) {
        let path = self.with_parent(path);
        self.entry(Entry {
            path: &path,
            mode: MODE_CHAR_DEVICE | permissions,
            data: &[],
            device: (major, minor),
        });
    }

    /// Appends the trailer and returns the archive's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(Entry {
            path: "TRAILER!!!",
            mode: 0,
            data: &[],
            device: (0, 0),
        });
        self.bytes
    }

    fn with_parent(&mut self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.directory(parent);
        }
        path.to_owned()
    }

    fn entry(&mut self, entry: Entry<'_>) {
        self.next_inode += 1;
        let name_size = entry.path.len() + 1;
        let links = if entry.mode & MODE_DIRECTORY == MODE_DIRECTORY {
            2
        } else {
            1
        };
        // newc: magic, then 13 fields of 8 hex digits: ino, mode, uid, gid, nlink, mtime,
        // filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check.
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.next_inode,
            entry.mode,
            0,
            0,
            links,
            0,
            entry.data.len(),
            0,
            0,
            entry.device.0,
            entry.device.1,
            name_size,
            0
        );
        // Writing into a Vec cannot fail.
        let _ = self.bytes.write_all(header.as_bytes());
        let _ = self.bytes.write_all(entry.path.as_bytes());
        self.bytes.push(0);
        self.pad_to_four();
        let _ = self.bytes.write_all(entry.data);
        self.pad_to_four();
    }

    fn pad_to_four(&mut self) {
        let padding = (4 - self.bytes.len() % 4) % 4;
        self.bytes.resize(self.bytes.len() + padding, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_parents_created_once() {
        let mut archive = CpioArchive::new();
        archive.file("usr/bin/tool", 0o755, b"abc");
        archive.file("usr/bin/other", 0o644, b"");
        let bytes = archive.finish();
        assert_eq!(bytes.len() & 3, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("usr/bin\0").count(), 1);
        assert_eq!(text.matches("070701").count(), 5); // usr, usr/bin, 2 files, trailer
        assert!(text.contains("TRAILER!!!"));
    }
}
