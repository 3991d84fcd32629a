//! What every part shares: ids ([`ids`]), domain types ([`model`]), the messages they exchange
//! ([`rpc`]), the message bus with its AMQP and in-process implementations ([`bus`]), and the
//! configuration loader and pieces common to every process ([`settings`]). The database layer
//! is `nova-db` and HTTP lives in the API crates: the compute agent, which uses this crate,
//! can reach neither.

pub mod baremetal;
pub mod bus;
pub mod firewall;
pub mod ids;
pub mod ipam;
pub mod model;
pub mod rpc;
pub mod secret;
pub mod settings;
pub mod time;
