//! What a lost token needs of the store: the key inventory by token serial, and CAs marked
//! compromised (their key was on a token reported lost: no further issuance). Records, not
//! rules (those are in `manager/token_loss.rs`).
//!
//! The contract adds (see `store/mod.rs`): a CA is marked compromised once — the first time
//! stays ([`TokenLossTransaction::mark_compromised`] says whether this call marked it). The
//! mark is re-checked by issuance under the CA's [`Lock::Ca`](super::Lock::Ca), which the
//! marking transaction takes first, so no certificate is issued by a CA after its mark is
//! committed.

use super::{KeyRecord, Result};

/// The lost-token part of a [`Transaction`](super::Transaction).
pub trait TokenLossTransaction {
    /// The keys on tokens (those with a token serial), without sealed parts, in id order;
    /// with `serial`, only that token's.
    fn token_keys(&self, serial: Option<&str>) -> Result<Vec<KeyRecord>>;
    /// Marks a certificate (a CA) compromised at `at` (Unix seconds) unless it is marked
    /// already; whether this call marked it. A certificate that is gone is
    /// [`StoreError::Conflict`](crate::error::StoreError::Conflict).
    fn mark_compromised(&mut self, id: i64, at: i64) -> Result<bool>;
    /// When a certificate was marked compromised (Unix seconds).
    fn compromised_at(&self, id: i64) -> Result<Option<i64>>;
    /// Every certificate marked compromised, with when, in id order.
    fn compromised(&self) -> Result<Vec<(i64, i64)>>;
}
