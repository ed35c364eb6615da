//! The test bed of dbfailover's integration tests: helpers shared by the files in `tests/`.
//!
//! ## Layout
//! - [`sqlite`]: SQLite database files in a temporary folder that can be moved away and back.
//! - [`cache`]: real Redis and memcached servers on free loopback ports; Redis under Sentinel
//!   (primary, replica, three Sentinels) and a Redis Cluster of three primaries and three replicas.
//! - [`events`]: an actor collecting the events a test's engine publishes.
//! - [`probe`]: a scripted probe, up or refusing as a flag says.
//! - [`proxy`]: a TCP proxy a test can cut (a partition between one client and a server).
//! - [`scenarios`]: the failure scenarios, written once and run for PostgreSQL and MariaDB.
//! - [`stored`]: reading and planting shared records as a store keeps them.
//! - [`server`]: real PostgreSQL and MariaDB servers on free loopback ports, with real faults.

pub mod cache;
pub mod events;
pub mod probe;
pub mod proxy;
pub mod scenarios;
pub mod server;
pub mod sqlite;
pub mod stored;
