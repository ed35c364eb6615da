//! The test bed of dbfailover's integration tests: helpers shared by the files in `tests/`.
//!
//! ## Layout
//! - [`sqlite`]: SQLite database files in a temporary folder that can be moved away and back.
//! - [`events`]: an actor collecting the events a test's engine publishes.

pub mod events;
pub mod sqlite;
