//! SQLite database files for tests: each knows its own name, and can be made unavailable for real.

use dbfailover::DatabaseUrl;
use dbfailover::sqlx::sqlite::SqliteConnectOptions;
use dbfailover::sqlx::{self, ConnectOptions, Connection};
use std::path::{Path, PathBuf};

/// A SQLite database file whose table `whoami` holds its name, so a query tells which database served it.
pub struct SqliteDb {
    path: PathBuf,
    name: String,
}

impl SqliteDb {
    /// Creates `dir/name.db`.
    pub async fn create(dir: &Path, name: &str) -> Result<Self, sqlx::Error> {
        let path = dir.join(format!("{name}.db"));
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await?;
        sqlx::query("CREATE TABLE whoami (name TEXT NOT NULL)")
            .execute(&mut conn)
            .await?;
        sqlx::query("INSERT INTO whoami (name) VALUES (?)")
            .bind(name)
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(Self {
            path,
            name: name.to_owned(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `sqlite://` URL of the file.
    pub fn url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&format!("sqlite://{}", self.path.display()))
            .unwrap_or_else(|e| panic!("test database URL: {e}"))
    }

    fn away(&self) -> PathBuf {
        self.path.with_extension("db.away")
    }

    /// Moves the file away: every new connection to it fails.
    pub fn take_away(&self) {
        std::fs::rename(&self.path, self.away()).unwrap_or_else(|e| panic!("moving away: {e}"));
    }

    /// Puts the file back.
    pub fn bring_back(&self) {
        std::fs::rename(self.away(), &self.path).unwrap_or_else(|e| panic!("bringing back: {e}"));
    }
}
