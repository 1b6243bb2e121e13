//! Test fixtures for the CMS and SCEP message tests: RSA identities made by the real
//! `openssl` (the peer these layers must interoperate with), a software signer and an RSA
//! decrypter over them, and a DER → BER rewriter that writes what OpenSSL's `-stream` writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::KeyError;
use crate::keys::soft::SoftSigner;
use crate::secret::SecretBytes;

/// Runs `openssl` in `dir` with `stdin`; its stdout, or a panic with its stderr.
pub(crate) fn openssl(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed for these tests");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("openssl ran");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RSA key and its self-signed certificate, in a temporary directory as `NAME.key.pem`
/// and `NAME.pem`.
pub(crate) struct Identity {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub cert: Vec<u8>,
    pub pkcs8: Vec<u8>,
}

impl Identity {
    /// A new identity: `bits` RSA, subject CN=`name`, serial `serial_hex` if given.
    pub(crate) fn new(name: &str, bits: u32, serial_hex: Option<&str>) -> Identity {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = format!("{name}.key.pem");
        let cert = format!("{name}.pem");
        let newkey = format!("rsa:{bits}");
        let subj = format!("/CN={name}");
        let mut args = vec![
            "req", "-x509", "-newkey", &newkey, "-nodes", "-keyout", &key, "-out", &cert, "-subj",
            &subj, "-days", "2",
        ];
        let serial;
        if let Some(s) = serial_hex {
            serial = format!("0x{s}");
            args.extend(["-set_serial", &serial]);
        }
        openssl(dir.path(), &args, b"");
        let der = openssl(dir.path(), &["x509", "-in", &cert, "-outform", "DER"], b"");
        let pkcs8 = openssl(
            dir.path(),
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER",
            ],
            b"",
        );
        Identity {
            dir,
            name: name.to_owned(),
            cert: der,
            pkcs8,
        }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub(crate) fn cert_pem(&self) -> String {
        self.path(&format!("{}.pem", self.name))
            .display()
            .to_string()
    }

    pub(crate) fn key_pem(&self) -> String {
        self.path(&format!("{}.key.pem", self.name))
            .display()
            .to_string()
    }

    pub(crate) fn signer(&self) -> SoftSigner {
        SoftSigner::from_pkcs8(&self.pkcs8).expect("test key")
    }

    /// RSA PKCS#1 v1.5 decryption with this key, as `KeyDecrypt` does it (2048 bits and up).
    pub(crate) fn decrypt(&self, ciphertext: &[u8]) -> Result<SecretBytes, KeyError> {
        let k = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(&self.pkcs8)
            .map_err(|_| KeyError::Unsupported("test key".into()))?;
        let k = aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey::new(k)
            .map_err(|_| KeyError::Unsupported("test key".into()))?;
        let mut out = vec![0u8; k.min_output_size()];
        let n = k
            .decrypt(ciphertext, &mut out)
            .map_err(|_| KeyError::Verification("RSA decryption failed".into()))?
            .len();
        out.truncate(n);
        Ok(SecretBytes::new(out))
    }
}

/// Rewrites DER as BER the way streaming encoders do: every constructed encoding with an
/// indefinite length, and every OCTET STRING longer than `chunk` as a constructed string of
/// `chunk`-byte segments.
pub(crate) fn der_to_ber(der: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < der.len() {
        let tag = der[pos];
        let (len, header) = match der[pos + 1] {
            l if l < 0x80 => (usize::from(l), 2),
            l => {
                let n = usize::from(l & 0x7f);
                let len = der[pos + 2..pos + 2 + n]
                    .iter()
                    .fold(0usize, |a, b| (a << 8) | usize::from(*b));
                (len, 2 + n)
            }
        };
        let content = &der[pos + header..pos + header + len];
        if tag & 0x20 != 0 {
            out.extend([tag, 0x80]);
            out.extend(der_to_ber(content, chunk));
            out.extend([0, 0]);
        } else if tag == 0x04 && content.len() > chunk {
            out.extend([0x24, 0x80]);
            for c in content.chunks(chunk) {
                out.extend(super::ber::tlv(0x04, c));
            }
            out.extend([0, 0]);
        } else {
            out.extend_from_slice(&der[pos..pos + header + len]);
        }
        pos += header + len;
    }
    out
}
