//! SoftHSM2 for the PKCS#11 tests: a throwaway token per test (made by
//! `softhsm-config/init-token.sh`), a certman token profile for it, OpenSC's `pkcs11-tool` as the
//! independent PKCS#11 peer, and a PKCS#11 shim module (`tests/fixtures/pkcs11-shim.c`) that makes
//! the token report PIN states SoftHSM never reports.
//!
//! Without SoftHSM2 (or `pkcs11-tool`) a test is skipped with a note on stderr, unless
//! `CERTMAN_REQUIRE_TOKENS=1` (CI), where it fails instead.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use tempfile::TempDir;

use super::{assert_success, openssl, openssl_output, stderr, stdout, Env};

/// SoftHSM2's PKCS#11 module (Debian `softhsm2`).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The token profile [`SoftHsm::new`] writes (`tokens_dir/softhsm.toml`, `default = true`).
pub const PROFILE: &str = "softhsm";
/// The SO PIN of every test token.
pub const SO_PIN: &str = "87654321";
/// The user PIN of every test token: distinctive, so a test can tell it never leaks.
pub const USER_PIN: &str = "pin-5f3a9c71";

/// `CKU_USER`, as the shim logs it (`login 1`).
pub const CKU_USER: u64 = 1;
/// `CK_TOKEN_INFO.flags` bits (PKCS#11 v2.40 §3.2; checked against p11-kit's, NSS's and
/// cryptoki-sys's `pkcs11.h`), for `SHIM_TOKEN_FLAGS`.
pub const CKF_USER_PIN_COUNT_LOW: u64 = 0x0001_0000;
pub const CKF_USER_PIN_FINAL_TRY: u64 = 0x0002_0000;
pub const CKF_USER_PIN_LOCKED: u64 = 0x0004_0000;

/// Requires the env var `CERTMAN_REQUIRE_TOKENS=1` to turn skips into failures.
pub fn tokens_required() -> bool {
    std::env::var("CERTMAN_REQUIRE_TOKENS").is_ok_and(|v| v == "1")
}

/// Whether `name` is an executable on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(name);
            p.is_file()
                && fs::metadata(&p)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// What is missing for the SoftHSM tests (empty: nothing).
fn missing_tools() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(SOFTHSM_MODULE).is_file() {
        missing.push(format!("{SOFTHSM_MODULE} not found"));
    }
    if !on_path("softhsm2-util") {
        missing.push("softhsm2-util not on PATH".to_owned());
    }
    if !on_path("pkcs11-tool") {
        missing.push("OpenSC's pkcs11-tool not on PATH".to_owned());
    }
    missing
}

/// One test's SoftHSM2 token and certman token-profile directory.
pub struct SoftHsm {
    /// holds everything below; removed on drop
    dir: TempDir,
    /// `SOFTHSM2_CONF` for every certman and pkcs11-tool run
    pub conf: PathBuf,
    /// the token's label
    pub label: String,
    /// the user PIN, in a file (mode 0600), as `pin-source = "file:…"` reads it
    pub pin_file: PathBuf,
    /// the PKCS#11 module
    pub module: PathBuf,
    /// certman's token-profile directory (`--tokens`), holding `softhsm.toml`
    pub tokens_dir: PathBuf,
    /// the user PIN ([`USER_PIN`])
    pub pin: String,
}

impl SoftHsm {
    /// A fresh token labelled `label` (at most 32 bytes) and the default profile
    /// [`PROFILE`] for it. `None` (with a note on stderr) when SoftHSM2 or pkcs11-tool is not
    /// installed — a panic instead under `CERTMAN_REQUIRE_TOKENS=1`.
    pub fn new(label: &str) -> Option<SoftHsm> {
        let missing = missing_tools();
        if !missing.is_empty() {
            let what = missing.join("; ");
            if tokens_required() {
                panic!(
                    "CERTMAN_REQUIRE_TOKENS=1 but SoftHSM2 is not installed ({what}); \
                     run scripts/setup.sh (Debian packages softhsm2 and opensc)"
                );
            }
            eprintln!("skipping: SoftHSM2 not installed ({what})");
            return None;
        }
        assert!(
            !label.is_empty() && label.len() <= 32,
            "a token label has 1..=32 bytes: {label:?}"
        );
        let dir = tempfile::Builder::new()
            .prefix("certman-hsm-")
            .tempdir()
            .expect("temp dir");
        let hsm_dir = dir.path().join("hsm");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-config/init-token.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&hsm_dir)
            .args([label, SO_PIN, USER_PIN])
            .env_remove("SOFTHSM2_CONF")
            .stdin(Stdio::null())
            .output()
            .expect("run init-token.sh");
        assert_success(&out, &format!("{} {}", script.display(), hsm_dir.display()));
        let conf = hsm_dir.join("softhsm2.conf");
        let pin_file = hsm_dir.join("user.pin");
        assert!(conf.is_file(), "init-token.sh wrote no {}", conf.display());
        let pin = fs::read_to_string(&pin_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pin_file.display()))
            .trim_end()
            .to_owned();
        assert_eq!(pin, USER_PIN, "init-token.sh wrote another PIN");
        let tokens_dir = dir.path().join("profiles");
        fs::create_dir(&tokens_dir).expect("profiles dir");
        let hsm = SoftHsm {
            dir,
            conf,
            label: label.to_owned(),
            pin_file,
            module: PathBuf::from(SOFTHSM_MODULE),
            tokens_dir,
            pin,
        };
        hsm.write_profile(
            PROFILE,
            &hsm.profile_toml(&hsm.module, &hsm.label, &hsm.pin_file, true),
        );
        Some(hsm)
    }

    /// The temporary root (for extra files: PIN files, logs, object dumps).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The environment every certman and pkcs11-tool run needs: `SOFTHSM2_CONF`.
    pub fn env_vars(&self) -> Vec<(OsString, OsString)> {
        vec![(
            OsString::from("SOFTHSM2_CONF"),
            self.conf.clone().into_os_string(),
        )]
    }

    /// A token profile: `kind = "pkcs11"`, `module`, `token_label`, `pin-source = "file:…"`,
    /// `max-sessions = 4`, `default = …`.
    pub fn profile_toml(
        &self,
        module: &Path,
        token_label: &str,
        pin_file: &Path,
        default: bool,
    ) -> String {
        format!(
            "kind = \"pkcs11\"\nmodule-path = {}\ntoken-label = {}\npin-source = {}\n\
             max-sessions = 4\ndefault = {default}\n",
            toml_str(&module.to_string_lossy()),
            toml_str(token_label),
            toml_str(&format!("file:{}", pin_file.display())),
        )
    }

    /// Writes `tokens_dir/NAME.toml`; returns its path.
    pub fn write_profile(&self, name: &str, toml: &str) -> PathBuf {
        let p = self.tokens_dir.join(format!("{name}.toml"));
        fs::write(&p, toml).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }

    /// Writes a PIN file (mode 0600) under the temporary root; returns its path.
    pub fn write_pin_file(&self, name: &str, pin: &str) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.root().join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        std::io::Write::write_all(&mut f, format!("{pin}\n").as_bytes()).expect("write PIN file");
        p
    }

    /// The explicit key URI of object `object` on this token (RFC 7512 with certman's query
    /// attributes `module-path` and `pin-source`).
    pub fn key_uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={}&pin-source=file:{}",
            self.label,
            self.module.display(),
            self.pin_file.display()
        )
    }

    /// A fresh [`Env`] whose certman runs get `SOFTHSM2_CONF` and `--tokens <tokens_dir>`.
    pub fn env(&self) -> Env {
        Env::new().with_softhsm(self)
    }

    /// `pkcs11-tool --module MODULE --token-label LABEL` with `SOFTHSM2_CONF` set.
    pub fn pkcs11_command(&self, module: &Path) -> Command {
        let mut c = Command::new("pkcs11-tool");
        c.arg("--module")
            .arg(module)
            .arg("--token-label")
            .arg(&self.label)
            .envs(self.env_vars())
            .current_dir(self.root())
            .stdin(Stdio::null());
        c
    }

    /// Runs `pkcs11-tool --module <module> --token-label <label> ARGS…`.
    pub fn pkcs11_tool<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.pkcs11_command(&self.module)
            .args(args)
            .output()
            .expect("run pkcs11-tool")
    }

    /// Runs `pkcs11-tool … --login --pin <pin> ARGS…`.
    pub fn pkcs11_tool_login<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.pkcs11_command(&self.module)
            .args(["--login", "--pin", &self.pin])
            .args(args)
            .output()
            .expect("run pkcs11-tool")
    }

    /// `pkcs11_tool_login` that must succeed; returns stdout.
    pub fn pkcs11_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.pkcs11_tool_login(args);
        let v: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        assert_success(&out, &format!("pkcs11-tool --login {}", v.join(" ")));
        stdout(&out)
    }

    /// All objects on the token, as `pkcs11-tool --login --list-objects` shows them.
    pub fn objects(&self) -> Vec<P11Object> {
        parse_objects(&self.pkcs11_ok(&["--list-objects"]))
    }

    /// The objects of `class` (`"Private Key"`, `"Public Key"`, `"Certificate"`, `"Data"`)
    /// labelled `label`.
    pub fn objects_labelled(&self, class: &str, label: &str) -> Vec<P11Object> {
        self.objects()
            .into_iter()
            .filter(|o| o.class() == class && o.label() == Some(label))
            .collect()
    }

    /// The one object of `class` labelled `label` (panics when there is none or several).
    /// The private key `label`, checked to be one that cannot leave the token: sensitive,
    /// always sensitive, never extractable, generated there (`local`).
    pub fn token_only_key(&self, label: &str) -> P11Object {
        let key = self.object("Private Key", label);
        let access = key.access();
        for want in [
            "sensitive",
            "always sensitive",
            "never extractable",
            "local",
        ] {
            assert!(
                access.iter().any(|a| a == want),
                "the token key {label} is not {want}: {key:?}"
            );
        }
        assert!(
            !access.iter().any(|a| a == "extractable"),
            "the token key {label} is extractable: {key:?}"
        );
        key
    }

    pub fn object(&self, class: &str, label: &str) -> P11Object {
        let mut v = self.objects_labelled(class, label);
        assert_eq!(
            v.len(),
            1,
            "expected one {class} object labelled {label:?} on token {}, found: {v:#?}",
            self.label
        );
        v.remove(0)
    }

    /// Reads an object (`kind`: `cert` or `pubkey`) to a DER file under the root.
    pub fn read_object(&self, kind: &str, label: &str) -> PathBuf {
        let out = self
            .root()
            .join(format!("{kind}-{label}-{}.der", super::random_hex(4)));
        self.pkcs11_ok(&[
            OsStr::new("--read-object"),
            OsStr::new("--type"),
            OsStr::new(kind),
            OsStr::new("--label"),
            OsStr::new(label),
            OsStr::new("--output-file"),
            out.as_os_str(),
        ]);
        assert!(
            fs::metadata(&out).is_ok_and(|m| m.len() > 0),
            "pkcs11-tool read no {kind} {label:?}"
        );
        out
    }

    /// The token's serial number as `pkcs11-tool --list-token-slots` shows it.
    pub fn serial(&self) -> String {
        let out = self
            .pkcs11_command(&self.module)
            .arg("--list-token-slots")
            .output()
            .expect("run pkcs11-tool");
        assert_success(&out, "pkcs11-tool --list-token-slots");
        let text = stdout(&out);
        let mut in_ours = false;
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim() {
                    "token label" => in_ours = v.trim() == self.label,
                    "serial num" if in_ours => return v.trim().to_owned(),
                    _ => {}
                }
            }
        }
        panic!("no serial of token {:?} in:\n{text}", self.label)
    }

    /// Proves independently of certman that the private key labelled `label` on the token is
    /// the key of certificate `crt` (PEM): pkcs11-tool signs a random message with it, OpenSSL
    /// verifies the signature with the certificate's public key.
    pub fn assert_key_matches_cert(&self, label: &str, crt: &Path) {
        let key = self.object("Private Key", label);
        let id = key
            .attr("ID")
            .unwrap_or_else(|| panic!("private key {label:?} has no ID: {key:?}"))
            .to_owned();
        let tag = super::random_hex(4);
        let file = |n: &str| self.root().join(format!("{n}-{tag}"));
        let (data, digest, sig, pubkey) = (file("msg"), file("digest"), file("sig"), file("pub"));
        fs::write(&data, super::random_hex(32)).expect("write message");
        fs::write(&pubkey, super::cert_public_key(crt)).expect("write public key");
        let p = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
        openssl(
            &["dgst", "-sha256", "-binary", "-out", &p(&digest), &p(&data)],
            self.root(),
        );
        let verify = if key.header.contains("EC") {
            // SoftHSM has no CKM_ECDSA_SHA256: sign the digest with CKM_ECDSA.
            self.pkcs11_ok(&[
                "--sign",
                "--mechanism",
                "ECDSA",
                "--signature-format",
                "openssl",
                "--id",
                &id,
                "--input-file",
                &p(&digest),
                "--output-file",
                &p(&sig),
            ]);
            openssl_output(
                &[
                    "pkeyutl",
                    "-verify",
                    "-pubin",
                    "-inkey",
                    &p(&pubkey),
                    "-in",
                    &p(&digest),
                    "-sigfile",
                    &p(&sig),
                ],
                self.root(),
            )
        } else {
            self.pkcs11_ok(&[
                "--sign",
                "--mechanism",
                "SHA256-RSA-PKCS",
                "--id",
                &id,
                "--input-file",
                &p(&data),
                "--output-file",
                &p(&sig),
            ]);
            openssl_output(
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    &p(&pubkey),
                    "-signature",
                    &p(&sig),
                    &p(&data),
                ],
                self.root(),
            )
        };
        assert!(
            verify.status.success(),
            "the token key {label:?} (ID {id}) is not the key of {}: {}{}",
            crt.display(),
            stdout(&verify),
            stderr(&verify)
        );
    }
}

/// Builds on [`Env`]: certman runs against a [`SoftHsm`].
pub trait WithSoftHsm {
    /// Adds `SOFTHSM2_CONF` and the global option `--tokens <tokens_dir>`.
    fn with_softhsm(self, hsm: &SoftHsm) -> Env;
}

impl WithSoftHsm for Env {
    fn with_softhsm(self, hsm: &SoftHsm) -> Env {
        let mut env = self;
        for (k, v) in hsm.env_vars() {
            env = env.with_env(k, v);
        }
        env.with_global_args(&[OsStr::new("--tokens"), hsm.tokens_dir.as_os_str()])
    }
}

/// One object of `pkcs11-tool --list-objects`: the header line (`Private Key Object; EC`) and
/// its `name: value` lines.
#[derive(Debug, Clone)]
pub struct P11Object {
    /// e.g. `Private Key Object; EC`
    pub header: String,
    /// e.g. `("label", "ca")`, `("ID", "01")`, `("Access", "sensitive, …")`
    pub attrs: Vec<(String, String)>,
}

impl P11Object {
    /// `Private Key`, `Public Key`, `Certificate`, `Data`, `Secret Key`, …
    pub fn class(&self) -> &str {
        self.header
            .split_once(" Object;")
            .map_or(self.header.as_str(), |(c, _)| c)
            .trim()
    }

    /// The value of attribute line `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `label:`
    pub fn label(&self) -> Option<&str> {
        self.attr("label")
    }

    /// The items of `Access:` (e.g. `sensitive`, `always sensitive`, `never extractable`,
    /// `local`; `extractable` when the key can leave the token).
    pub fn access(&self) -> Vec<String> {
        self.attr("Access")
            .map(|a| a.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    }
}

/// Parses `pkcs11-tool --list-objects` output (OpenSC 0.23 format).
pub fn parse_objects(text: &str) -> Vec<P11Object> {
    let mut objects: Vec<P11Object> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if line.contains(" Object;") || line.ends_with(" Object") {
                objects.push(P11Object {
                    header: line.trim().to_owned(),
                    attrs: Vec::new(),
                });
            }
            continue;
        }
        if let (Some(o), Some((k, v))) = (objects.last_mut(), line.split_once(':')) {
            o.attrs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    objects
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Compiles `tests/fixtures/pkcs11-shim.c` into `out_dir/libpkcs11shim.so` (once per process
/// and directory; written under a temporary name and renamed, so concurrent test processes
/// never load a half-written file); returns its path.
pub fn build_shim(out_dir: &Path) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(out_dir) {
        return p.clone();
    }
    fs::create_dir_all(out_dir).unwrap_or_else(|e| panic!("{}: {e}", out_dir.display()));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pkcs11-shim.c");
    let lib = out_dir.join("libpkcs11shim.so");
    let tmp = out_dir.join(format!("libpkcs11shim.so.{}.tmp", std::process::id()));
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .arg("-ldl")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `cc` to build the shim: {e}"));
    assert_success(&out, &format!("cc … {}", src.display()));
    fs::rename(&tmp, &lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    built.insert(out_dir.to_owned(), lib.clone());
    lib
}

/// The shim, built once per process under Cargo's target tmp dir.
pub fn shim_module() -> PathBuf {
    build_shim(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("pkcs11-shim"))
}
