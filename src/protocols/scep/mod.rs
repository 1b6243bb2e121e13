//! SCEP (RFC 8894): the pkiMessage layer ([`message`]).

pub mod message;
