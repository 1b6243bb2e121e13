//! File-system helpers: files written whole or not at all, with explicit modes, published only
//! when the caller says so (after its transaction commits); private directories.
//!
//! A [`PendingFile`] is written, synced and given its mode as an unnamed file in the target's
//! directory (Linux `O_TMPFILE`): nothing is visible, and a process killed at any point leaves
//! nothing behind. [`PendingFile::publish`] then links it in under its name in one step. Where
//! the name exists already (an earlier export), the old file is unlinked first and the new one
//! linked in: the name holds the old file, then none, then the new one — never a partial file
//! and never a temporary name (Linux cannot link over a name, and a temporary name renamed over
//! it is what a kill would leave behind). Filesystems without `O_TMPFILE` (rare: not ext4, xfs,
//! btrfs or tmpfs) get a named temporary renamed into place, which a kill at the wrong moment
//! does leave.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A file written in full but not yet under its name.
#[derive(Debug)]
pub struct PendingFile {
    file: File,
    path: PathBuf,
    dir: PathBuf,
    /// the fallback's named temporary (no `O_TMPFILE`), removed unless published
    named: Option<PathBuf>,
}

/// Writes `data` with `mode` as a file that will become `path` when published. Fails (and
/// leaves nothing) if the directory cannot take it.
pub fn prepare(path: &Path, data: &[u8], mode: u32) -> std::io::Result<PendingFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if path.file_name().is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no file name",
        ));
    }
    let (file, named) = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(mode)
        .open(&dir)
    {
        Ok(f) => (f, None),
        // EOPNOTSUPP: the filesystem has no unnamed files; EISDIR/EINVAL: the kernel does not
        // know O_TMPFILE.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            let tmp = temp_name(path, &dir);
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            (f, Some(tmp))
        }
        Err(e) => return Err(e),
    };
    // From here on, a failure drops `pending`, which removes a named temporary.
    let mut pending = PendingFile {
        file,
        path: path.to_owned(),
        dir,
        named,
    };
    pending.file.write_all(data)?;
    // the mode exactly, whatever the umask took away
    pending
        .file
        .set_permissions(fs::Permissions::from_mode(mode))?;
    pending.file.sync_all()?;
    Ok(pending)
}

impl PendingFile {
    /// Where it goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the file under its name (replacing what is there) and syncs the directory.
    pub fn publish(mut self) -> std::io::Result<()> {
        match self.named.take() {
            Some(tmp) => {
                let result = fs::rename(&tmp, &self.path);
                if result.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                result?;
            }
            None => {
                // Another writer may put a file there between the unlink and the link: a few
                // rounds, then its error.
                let mut rounds = 0;
                loop {
                    match link_unnamed(&self.file, &self.path) {
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && rounds < 3 => {
                            rounds += 1;
                            match fs::remove_file(&self.path) {
                                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                    return Err(e)
                                }
                                _ => {}
                            }
                        }
                        other => break other?,
                    }
                }
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        // Unpublished: an unnamed file goes with its descriptor; a named temporary is removed.
        if let Some(tmp) = self.named.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// A hidden name beside `path` for a file on its way in (filesystems without `O_TMPFILE`).
fn temp_name(path: &Path, dir: &Path) -> PathBuf {
    let mut rnd = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut rnd);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", hex::encode(rnd)))
}

/// Gives the unnamed (`O_TMPFILE`) file `file` the name `to` (linkat through /proc, as
/// open(2) documents); `AlreadyExists` if `to` exists.
fn link_unnamed(file: &File, to: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that live across the call; AT_FDCWD and
    // AT_SYMLINK_FOLLOW are the documented way to link an O_TMPFILE file by its /proc path.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes `data` to `path` atomically, now: [`prepare`] then [`PendingFile::publish`].
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    prepare(path, data, mode)?.publish()
}

/// Creates `dir` (and parents) and makes it private (0700).
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.key");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_pending_file_is_invisible_until_published_and_gone_if_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cert_export_x.crt");
        let pending = prepare(&p, b"certificate", 0o644).unwrap();
        assert!(names(d.path()).is_empty(), "visible before publish");
        pending.publish().unwrap();
        assert_eq!(names(d.path()), ["cert_export_x.crt"]);
        assert_eq!(fs::read(&p).unwrap(), b"certificate");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // dropped unpublished: nothing changes, nothing is left
        drop(prepare(&p, b"other", 0o644).unwrap());
        drop(prepare(&d.path().join("new.crt"), b"other", 0o644).unwrap());
        assert_eq!(names(d.path()), ["cert_export_x.crt"]);
        assert_eq!(fs::read(&p).unwrap(), b"certificate");
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.key");
        // 0o640 survives a umask of 022 only if set explicitly after creation
        write_atomic(&p, b"k", 0o640).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn an_unwritable_directory_fails_before_anything_is_published() {
        let d = tempfile::tempdir().unwrap();
        let e = prepare(&d.path().join("missing-dir/x.crt"), b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
