//! What every API of the service shares, so that each one (compute, image, network, identity,
//! and bare metal next) is a crate of routes and handlers only:
//!
//! - [`context`]: who is calling ([`RequestContext`]), made by the process's [`Authenticate`];
//! - [`error`]: the one error type and its mapping to each service's fault body;
//! - [`body`]: request body checks;
//! - [`listing`]: the HTTP half of the one list engine (limit, marker, sort keys, filters, tag
//!   filters, next links); its SQL half is `nova_db::listing`;
//! - [`policy`]: role checks;
//! - [`links`]: links from the configured public URL;
//! - [`server`]: the HTTP server that serves one or several APIs;
//! - [`slow_bodies`]: request bodies read against the clock.

pub mod body;
pub mod context;
pub mod error;
pub mod links;
pub mod listing;
pub mod policy;
pub mod server;
pub mod slow_bodies;

pub use context::{Authenticate, RequestContext, RequestId, Unauthorized};
pub use error::{bad, ApiError, ApiResult, FaultFormat};
pub use server::Service;
