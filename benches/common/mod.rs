//! Helpers the benches share (each bench includes this file as `mod common`; not every bench
//! uses every helper).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A number from an argument or the environment (`10_000` allowed); panics naming `what`.
pub fn parse_num<T: std::str::FromStr>(what: &str, v: &str) -> T {
    v.trim()
        .replace('_', "")
        .parse()
        .unwrap_or_else(|_| panic!("{what}: '{v}' is not a valid number"))
}

/// `openssl verify -x509_strict -purpose sslserver`: `leaf` must chain to `ca`.
pub fn openssl_verify(ca: &Path, leaf: &Path) {
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(ca)
        .arg(leaf)
        .output()
        .expect("cannot run openssl verify");
    assert!(
        out.status.success(),
        "openssl verify of {} against {} failed:\n{}{}",
        leaf.display(),
        ca.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The type of the filesystem holding `path`, from /proc/mounts (longest matching mount point).
pub fn filesystem_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _dev = f.next()?;
            let mount = f.next()?.replace("\\040", " ");
            let fstype = f.next()?;
            path.starts_with(&mount)
                .then(|| (mount.len(), fstype.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t)
}
