//! File-system helpers: files written whole or not at all, with explicit modes, published only
//! when the caller says so (after its transaction commits); private directories.
//!
//! A [`PendingFile`] is written, synced and given its mode as an unnamed file in the target's
//! directory (Linux `O_TMPFILE`): nothing is visible, and a process killed at any point leaves
//! nothing behind. [`PendingFile::publish`] then links it in under its name in one step. Where
//! the name exists already (an earlier export), the old file is unlinked first and the new one
//! linked in: the name holds the old file, then none, then the new one — never a partial file
//! and never a temporary name (Linux cannot link over a name, and a temporary name renamed over
//! it is what a kill would leave behind). Where unnamed files cannot be had (some network and
//! overlay filesystems, no /proc), a hidden named temporary is renamed into place: a kill
//! before the rename leaves it, and the next write of the same file clears it.

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
    let dir = parent_dir(path)?;
    // An unnamed file is linked in through /proc/self/fd: without /proc, a named temporary.
    if !Path::new("/proc/self/fd").is_dir() {
        return prepare_named(path, data, mode);
    }
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(mode)
        .open(&dir)
    {
        Ok(file) => fill(
            PendingFile {
                file,
                path: path.to_owned(),
                dir,
                named: None,
            },
            data,
            mode,
        ),
        // EOPNOTSUPP: the filesystem has no unnamed files (some network and overlay
        // filesystems); EISDIR/EINVAL: the kernel does not know O_TMPFILE.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            prepare_named(path, data, mode)
        }
        Err(e) => Err(e),
    }
}

/// [`prepare`] with a hidden named temporary beside `path`, renamed into place when published:
/// where unnamed files cannot be had. A process killed before the rename leaves that file; the
/// next write of the same `path` removes such leftovers once they are a minute old (younger
/// ones may be another writer's, in flight).
fn prepare_named(path: &Path, data: &[u8], mode: u32) -> std::io::Result<PendingFile> {
    let dir = parent_dir(path)?;
    remove_stale_temporaries(path, &dir);
    let tmp = temp_name(path, &dir);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    fill(
        PendingFile {
            file,
            path: path.to_owned(),
            dir,
            named: Some(tmp),
        },
        data,
        mode,
    )
}

fn parent_dir(path: &Path) -> std::io::Result<PathBuf> {
    if path.file_name().is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no file name",
        ));
    }
    Ok(match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    })
}

/// Writes, sets the mode and syncs the file of `pending`; a failure drops it (which removes a
/// named temporary).
fn fill(mut pending: PendingFile, data: &[u8], mode: u32) -> std::io::Result<PendingFile> {
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

/// A hidden name beside `path` for a file on its way in (filesystems without `O_TMPFILE`):
/// `.NAME.<16 hex digits>.tmp`.
fn temp_name(path: &Path, dir: &Path) -> PathBuf {
    let mut rnd = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut rnd);
    dir.join(format!("{}{}.tmp", temp_prefix(path), hex::encode(rnd)))
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// Removes `path`'s temporaries (see [`temp_name`]) that are older than a minute: what a
/// process killed between writing and renaming one left.
fn remove_stale_temporaries(path: &Path, dir: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(middle) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
        else {
            continue;
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if middle.len() == 16 && middle.bytes().all(|b| b.is_ascii_hexdigit()) && old {
            let _ = fs::remove_file(e.path());
        }
    }
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

/// Writes `data` to `path` now, whole or not at all: [`prepare`] then
/// [`PendingFile::publish`] (see the module docs for a file that exists already).
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
    fn without_unnamed_files_a_named_temporary_is_renamed_and_stale_ones_are_cleared() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.crt");
        fs::write(&p, b"old").unwrap();
        let pending = prepare_named(&p, b"new", 0o644).unwrap();
        let hidden: Vec<String> = names(d.path())
            .into_iter()
            .filter(|n| n.starts_with(".x.crt."))
            .collect();
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        assert_eq!(fs::read(&p).unwrap(), b"old", "published early");
        pending.publish().unwrap();
        assert_eq!(names(d.path()), ["x.crt"]);
        assert_eq!(fs::read(&p).unwrap(), b"new");
        // dropped unpublished: its temporary goes
        drop(prepare_named(&p, b"other", 0o644).unwrap());
        assert_eq!(names(d.path()), ["x.crt"]);
        // what a killed writer left: removed by the next write once a minute old, and only
        // names of the temporary's shape
        let stale = d.path().join(".x.crt.0123456789abcdef.tmp");
        let young = d.path().join(".x.crt.fedcba9876543210.tmp");
        let other = d.path().join(".x.crt.notours.tmp");
        for f in [&stale, &young, &other] {
            fs::write(f, b"left").unwrap();
        }
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for f in [&stale, &other] {
            fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        prepare_named(&p, b"newer", 0o644)
            .unwrap()
            .publish()
            .unwrap();
        assert!(!stale.exists());
        assert!(young.exists() && other.exists());
        assert_eq!(fs::read(&p).unwrap(), b"newer");
    }

    #[test]
    fn an_unwritable_directory_fails_before_anything_is_published() {
        let d = tempfile::tempdir().unwrap();
        let e = prepare(&d.path().join("missing-dir/x.crt"), b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
