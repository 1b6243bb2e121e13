//! Wire protocols with no HTTP framework in them, talking to the certificate manager through
//! small ports it implements: bounded outbound HTTP ([`fetch`]) and CRL downloads
//! ([`crl_download`]); SCEP ([`scep`]).

pub mod crl_download;
pub mod fetch;
pub mod scep;

#[cfg(test)]
pub(crate) mod testing;
