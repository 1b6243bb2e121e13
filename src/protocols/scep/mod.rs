//! SCEP (RFC 8894): the pkiMessage layer ([`message`]) and the server side ([`server`]): the
//! operations answered for a server path, talking to the CA through the [`server::ScepCa`]
//! port the manager implements.

pub mod message;
pub mod server;
