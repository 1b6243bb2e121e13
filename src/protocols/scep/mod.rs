//! SCEP (RFC 8894): the pkiMessage layer ([`message`]); the server side ([`server`]): the
//! operations answered for a server path, talking to the CA through the [`server::ScepCa`]
//! port the manager implements, and forwarding upstream in RA mode (`ra`); the client's wire
//! layer ([`client`]): the operations sent to a server over the bounded fetcher; and the
//! client's state machine ([`enrolment`]), talking to the manager through its
//! [`enrolment::ScepClients`] port.

pub mod client;
pub mod enrolment;
pub mod message;
mod ra;
pub mod server;
