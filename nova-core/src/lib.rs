//! What the services share: domain types ([`model`]), the messages they exchange ([`rpc`]),
//! the message bus with its AMQP and in-process implementations ([`bus`]), configuration
//! pieces common to every process ([`settings`]) and, behind the `db` feature, the database
//! layer ([`db`]). HTTP types stay in `nova-api`; database rows never leave [`db`].

pub mod bus;
#[cfg(feature = "db")]
pub mod db;
pub mod ids;
pub mod model;
pub mod rpc;
pub mod settings;
pub mod time;
