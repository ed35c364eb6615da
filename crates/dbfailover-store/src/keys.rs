//! The key layout every shared store uses, the seed's keys included.

/// The keys of one connection's entry under `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The whole entry (`STATUS failures successes updated_at_ms`), what the engine reads.
    pub state: String,
    /// The entry's version.
    pub version: String,
    /// The seed's status key, `{prefix}_conn_status_{name}` (HEALTHY / DOWN / UNKNOWN).
    pub status: String,
    /// The seed's failure count key, `{prefix}_conn_failure_count_{name}`.
    pub failure_count: String,
}

impl Keys {
    /// The keys of `connection` under `prefix`.
    pub fn new(prefix: &str, connection: &str) -> Self {
        Self {
            state: format!("{prefix}_conn_state_{connection}"),
            version: format!("{prefix}_conn_version_{connection}"),
            status: format!("{prefix}_conn_status_{connection}"),
            failure_count: format!("{prefix}_conn_failure_count_{connection}"),
        }
    }
}

/// The store-wide version counter (never expires, so versions never repeat).
pub fn version_counter(prefix: &str) -> String {
    format!("{prefix}_version_seq")
}

/// The channel changes are announced on (Redis).
pub fn changes_channel(prefix: &str) -> String {
    format!("{prefix}_changes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_keys_are_kept() {
        let keys = Keys::new("dynamic_db_failover_status", "mysql");
        assert_eq!(keys.status, "dynamic_db_failover_status_conn_status_mysql");
        assert_eq!(
            keys.failure_count,
            "dynamic_db_failover_status_conn_failure_count_mysql"
        );
    }
}
