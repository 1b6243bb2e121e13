//! Keeping secrets out of core files: both programs (`certman` and `certman-core`) start with
//! [`no_core_dumps`].

/// Keeps secrets out of core files, before anything is read: PINs, passphrases and keys pass
/// through the memory of every certman process (a core of one held 59 copies of a passphrase).
/// `RLIMIT_CORE` 0, soft and hard, so that nothing this process starts can raise it again; and
/// on Linux not dumpable (`PR_SET_DUMPABLE` 0), which also keeps other processes of the same
/// user from attaching with ptrace or reading `/proc/PID/mem`. Neither call can fail with these
/// arguments; if one did, the process would go on as before.
pub fn no_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the rlimit it is given, which lives across the call.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
    }
    // SAFETY: PR_SET_DUMPABLE takes its value as the second argument; the rest are unused.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}
