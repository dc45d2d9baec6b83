//! Safe writes: every output is written to a temporary file in the destination directory,
//! flushed to disk, and renamed into place, so a crash leaves either the old file or the new
//! one, never a partial one. Files that may hold PHI are created with mode 0600.

use std::fs;
use std::io::{self, Seek, Write};
use std::path::Path;

/// Whether `path` names something other than a regular file or a folder: a character device
/// such as `/dev/null`, a FIFO, a socket (symbolic links followed, so `/dev/stdout` counts).
/// Such a destination is written in place: renaming a temporary file onto it would replace the
/// device or pipe with a plain file (run as root, `-o /dev/null` would leave every program on
/// the machine writing into a file), and nothing there can be half-replaced anyway.
pub fn is_stream(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| {
        let t = m.file_type();
        !t.is_file() && !t.is_dir()
    })
}

/// Opens a destination that [`is_stream`] for writing, as it is.
pub fn open_stream(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).open(path)
}

/// Writes `data` to `path` atomically. `private` creates the file with mode 0600. A device or
/// pipe ([`is_stream`]) is written in place.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> io::Result<()> {
    if is_stream(path) {
        return open_stream(path)?.write_all(data);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".eligo-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    set_mode(tmp.as_file(), private)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// A file written in place of `path` only when [`AtomicFile::commit`] is called: for outputs too
/// large to hold in memory. Dropping it without committing removes the temporary file. Callers
/// that take a destination from the user check [`is_stream`] first: a device or pipe cannot be
/// replaced by a rename.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl AtomicFile {
    pub fn create(path: &Path, private: bool) -> io::Result<AtomicFile> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let tmp = tempfile::Builder::new()
            .prefix(".eligo-")
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        set_mode(tmp.as_file(), private)?;
        Ok(AtomicFile {
            tmp,
            path: path.to_path_buf(),
            dir,
        })
    }

    /// The temporary file being written (for writers that rewrite what they wrote, such as
    /// [`crate::batch::ConvertObserver::direct`]).
    pub fn as_file(&self) -> &fs::File {
        self.tmp.as_file()
    }

    /// Flushes to disk and renames to `path` instead of the path given at creation (it must be
    /// in the same folder): for a file begun before its final name is known.
    pub fn commit_to(mut self, path: &Path) -> io::Result<()> {
        self.path = path.to_path_buf();
        self.commit()
    }

    /// Flushes to disk and renames into place.
    pub fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        sync_dir(&self.dir)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

#[cfg(unix)]
fn set_mode(f: &fs::File, private: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(if private {
        0o600
    } else {
        0o644
    }))
}

#[cfg(not(unix))]
fn set_mode(_f: &fs::File, _private: bool) -> io::Result<()> {
    Ok(())
}

/// Makes a rename durable by syncing its directory (a no-op where directories cannot be opened).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()?;
    }
    let _ = dir;
    Ok(())
}

/// Bytes written now and read back later, in order: kept in memory up to [`Spill::AT`], then
/// in an anonymous temporary file (the OS removes it when it is dropped or the process dies),
/// so a report section of any length costs a fixed amount of memory.
#[derive(Debug, Default)]
pub struct Spill {
    mem: Vec<u8>,
    file: Option<io::BufWriter<fs::File>>,
}

impl Spill {
    /// Bytes kept in memory before the rest goes to disk.
    pub const AT: usize = 1 << 20;

    /// Writes everything written so far to `out`; the spill can go on growing after.
    pub fn copy_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.mem)?;
        if let Some(w) = &mut self.file {
            w.flush()?;
            let f = w.get_mut();
            f.rewind()?;
            io::copy(f, out)?;
            f.seek(io::SeekFrom::End(0))?;
        }
        Ok(())
    }
}

impl Write for Spill {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.file.is_none() && self.mem.len() + b.len() > Spill::AT {
            self.file = Some(io::BufWriter::new(tempfile::tempfile()?));
        }
        match &mut self.file {
            Some(w) => w.write(b),
            None => {
                self.mem.extend_from_slice(b);
                Ok(b.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_private_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.999");
        write_atomic(&p, b"one", true).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_written_in_place_not_replaced() {
        // Through a link, so that a regression replaces the link, not /dev/null.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &p).unwrap();
        assert!(is_stream(&p));
        write_atomic(&p, b"gone", true).unwrap();
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert!(fs::read(&p).unwrap().is_empty());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        // Regular files, folders and paths that do not exist yet are not streams.
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert!(!is_stream(&f) && !is_stream(d.path()) && !is_stream(&d.path().join("new")));
    }

    #[test]
    fn a_spill_gives_back_what_was_written_in_order_in_memory_or_on_disk() {
        for chunk in [1usize, 1000, Spill::AT - 1, Spill::AT + 7] {
            let mut s = Spill::default();
            let mut want = Vec::new();
            for i in 0..5u8 {
                let part = vec![b'a' + i; chunk];
                s.write_all(&part).unwrap();
                want.extend_from_slice(&part);
            }
            let mut got = Vec::new();
            s.copy_to(&mut got).unwrap();
            assert_eq!(got.len(), want.len());
            assert!(got == want, "chunk {chunk}");
            // Copied twice and grown after: still everything, in order.
            s.write_all(b"end").unwrap();
            want.extend_from_slice(b"end");
            let mut again = Vec::new();
            s.copy_to(&mut again).unwrap();
            assert!(again == want, "chunk {chunk}, second copy");
        }
    }
}
