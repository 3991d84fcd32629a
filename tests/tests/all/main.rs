//! The integration tests, linked into one binary (one link of the whole service instead of one
//! per file). Two run apart: `broker_restart` restarts the broker every test shares, and
//! `image_memory` measures a process's memory with nothing else running beside it.

mod baremetal;
mod bus;
mod compatibility;
mod compute_cli;
mod config_samples;
mod docker;
mod identity;
mod images;
mod libvirt;
mod networking;
mod processes;
mod repository;
mod scenarios;
mod server_resources;
