//! certman: the RouterOS `/certificate` manager with keys on PKCS#11 tokens, PIV cards or in
//! sealed software storage.
//!
//! Layers (data flows down): `cli` → `manager` → `x509` / `store` / `keys`. See
//! `../shared/design/ARCHITECTURE.md`.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod app;
pub mod cli;
pub mod error;
pub mod fsutil;
pub mod keys;
pub mod manager;
pub mod protocols;
pub mod seal;
pub mod secret;
pub mod service;
pub mod store;
pub mod x509;
