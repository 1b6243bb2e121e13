//! SCEP (RFC 8894): the pkiMessage layer ([`message`]), the server side ([`server`]): the
//! operations answered for a server path, talking to the CA through the [`server::ScepCa`]
//! port the manager implements; and the client's wire layer ([`client`]): the operations sent
//! to a server over the bounded fetcher.

pub mod client;
pub mod message;
pub mod server;
