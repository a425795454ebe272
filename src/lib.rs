//! busflow-comms: the communications service of Busflow. This library wires
//! the workspace crates into runnable parts — API server, Temporal worker,
//! migrations and the local dev stack — for the `busflow-comms` binary and
//! the end-to-end tests.

pub mod bench;
pub mod config;
pub mod database;
pub mod dev;
pub mod server;
pub mod shutdown;
pub mod worker;
