//! Software keys parsed once per process: a long-running `serve` signs and decrypts with its
//! CA's (or RA's) key at every SCEP enrolment, and parsing it each time (unsealing, AWS-LC's
//! RSA key check, a fresh blinding set-up per key object) cost more than the RSA operations
//! themselves. Entries are found by a digest of the key's id and sealed blob, so a changed key
//! is never served from here; at most [`CAPACITY`] keys are kept, the oldest dropped first.
//! A parsed key lives in AWS-LC's memory (freed and cleansed by AWS-LC when dropped), as it
//! does while any signature is made.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey;

use super::SoftSigner;
use crate::error::KeyError;

/// Keys kept parsed.
pub(super) const CAPACITY: usize = 16;

struct Entry {
    digest: [u8; 32],
    signer: Option<Arc<SoftSigner>>,
    decrypter: Option<Arc<Pkcs1PrivateDecryptingKey>>,
}

/// The parsed keys of one provider.
#[derive(Default)]
pub(super) struct ParsedKeys {
    entries: Mutex<VecDeque<Entry>>,
}

/// What a cached key is known by: its id and its sealed material.
pub(super) fn key_digest(id: &str, sealed: &[u8]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&(id.len() as u32).to_be_bytes());
    ctx.update(id.as_bytes());
    ctx.update(sealed);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl ParsedKeys {
    fn with_entry<T>(&self, digest: [u8; 32], f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = entries.iter().position(|e| e.digest == digest) {
            return f(&mut entries[i]);
        }
        if entries.len() >= CAPACITY {
            entries.pop_front();
        }
        entries.push_back(Entry {
            digest,
            signer: None,
            decrypter: None,
        });
        let last = entries.len() - 1;
        f(&mut entries[last])
    }

    /// The signer for `digest`, parsed by `load` the first time (outside the lock: two
    /// threads may both parse a key once; one of them is kept).
    pub(super) fn signer(
        &self,
        digest: [u8; 32],
        load: impl FnOnce() -> Result<SoftSigner, KeyError>,
    ) -> Result<Arc<SoftSigner>, KeyError> {
        if let Some(s) = self.with_entry(digest, |e| e.signer.clone()) {
            return Ok(s);
        }
        let loaded = Arc::new(load()?);
        Ok(self.with_entry(digest, |e| e.signer.get_or_insert(loaded).clone()))
    }

    /// The RSA decrypting key for `digest`, parsed by `load` the first time.
    pub(super) fn decrypter(
        &self,
        digest: [u8; 32],
        load: impl FnOnce() -> Result<Pkcs1PrivateDecryptingKey, KeyError>,
    ) -> Result<Arc<Pkcs1PrivateDecryptingKey>, KeyError> {
        if let Some(d) = self.with_entry(digest, |e| e.decrypter.clone()) {
            return Ok(d);
        }
        let loaded = Arc::new(load()?);
        Ok(self.with_entry(digest, |e| e.decrypter.get_or_insert(loaded).clone()))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}
