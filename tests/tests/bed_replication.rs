//! The test bed's replication itself: replicas follow, refuse writes and lag on demand; a promoted
//! replica takes writes on a new timeline; an old primary restarted as is writes on its own (split
//! brain) until it is made a replica of the new writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::sqlx::mysql::MySqlConnectOptions;
use dbfailover::sqlx::postgres::PgConnectOptions;
use dbfailover::sqlx::{self, ConnectOptions};
use dbfailover_tests::server::{DbServer, Kind};
use std::time::{Duration, Instant};

/// How long a replica is given to show a row its writer committed.
const REPLICATION_WAIT: Duration = Duration::from_secs(10);

/// How long a paused replica must keep a new row hidden.
const PAUSED_WAIT: Duration = Duration::from_millis(500);

/// The rows of `marks` (a table in the administrator's database) with this `id`.
async fn marks(server: &DbServer, id: i64) -> i64 {
    let query = match server.kind() {
        Kind::Postgres => format!("SELECT count(*) FROM marks WHERE id = {id}"),
        Kind::MariaDb => format!("SELECT CAST(count(*) AS SIGNED) FROM app.marks WHERE id = {id}"),
    };
    server.admin_count(&query).await
}

/// Creates `marks` on a writer, before its replicas are made: they have it once they follow, so
/// waiting for a row of it never meets a table not there yet.
async fn create_marks(server: &DbServer) {
    let statement = match server.kind() {
        Kind::Postgres => "CREATE TABLE marks (id bigint NOT NULL)",
        Kind::MariaDb => "CREATE TABLE app.marks (id BIGINT NOT NULL)",
    };
    server.admin(&[statement]).await;
}

/// Inserts a row into `marks` as the administrator.
async fn mark(server: &DbServer, id: i64) {
    let statement = match server.kind() {
        Kind::Postgres => format!("INSERT INTO marks VALUES ({id})"),
        Kind::MariaDb => format!("INSERT INTO app.marks VALUES ({id})"),
    };
    server.admin(&[&statement]).await;
}

/// Waits until `server` holds the row `id` of `marks`.
async fn wait_mark(server: &DbServer, id: i64) {
    let deadline = Instant::now() + REPLICATION_WAIT;
    while marks(server, id).await == 0 {
        assert!(
            Instant::now() < deadline,
            "{}: mark {id} did not arrive within {REPLICATION_WAIT:?}:\n{}",
            server.name(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A write as the application makes it (into `whoami`, with the application's URL).
async fn app_write(server: &DbServer) -> Result<(), String> {
    let url = server.url();
    let insert = "INSERT INTO whoami VALUES ('written')";
    match server.kind() {
        Kind::Postgres => {
            let opts: PgConnectOptions = url.expose().parse().unwrap();
            let mut conn = opts.connect().await.map_err(|e| e.to_string())?;
            sqlx::query(insert).execute(&mut conn).await.map(drop)
        }
        Kind::MariaDb => {
            let opts: MySqlConnectOptions = url.expose().parse().unwrap();
            let mut conn = opts.connect().await.map_err(|e| e.to_string())?;
            sqlx::query(insert).execute(&mut conn).await.map(drop)
        }
    }
    .map_err(|e| e.to_string())
}

#[actix_rt::test]
async fn postgres_replicas_follow_refuse_writes_and_lag_on_demand() {
    let started = Instant::now();
    let primary = DbServer::postgres_primary_for_replication("primary").await;
    create_marks(&primary).await;
    let replica1 = DbServer::postgres_replica_of(&primary, "replica-1").await;
    let replica2 = DbServer::postgres_replica_of(&primary, "replica-2").await;
    eprintln!("three servers up in {:?}", started.elapsed());

    assert!(!primary.is_in_recovery().await);
    for replica in [&replica1, &replica2] {
        assert!(replica.is_in_recovery().await, "{}", replica.name());
        assert!(replica.is_read_only().await, "{}", replica.name());
        assert_eq!(
            replica
                .admin_count("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")
                .await,
            1,
            "{}",
            replica.name()
        );
    }
    assert_eq!(
        primary
            .admin_count("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .await,
        2
    );

    mark(&primary, 1).await;
    wait_mark(&replica1, 1).await;
    wait_mark(&replica2, 1).await;

    for replica in [&replica1, &replica2] {
        let refused = app_write(replica).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("read-only transaction")),
            "{}: {refused:?}",
            replica.name()
        );
    }
    app_write(&primary).await.unwrap();

    replica1.pause_replay().await;
    let inserted = Instant::now();
    mark(&primary, 2).await;
    wait_mark(&replica2, 2).await;
    while inserted.elapsed() < PAUSED_WAIT {
        assert_eq!(marks(&replica1, 2).await, 0, "a paused replica replayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(marks(&replica1, 2).await, 0, "a paused replica replayed");
    assert_eq!(marks(&replica1, 1).await, 1);

    replica1.resume_replay().await;
    wait_mark(&replica1, 2).await;
    eprintln!("done in {:?}", started.elapsed());
}

#[actix_rt::test]
async fn postgres_promotion_split_brain_and_rejoin() {
    let started = Instant::now();
    let mut primary = DbServer::postgres_primary_for_replication("primary").await;
    create_marks(&primary).await;
    let replica1 = DbServer::postgres_replica_of(&primary, "replica-1").await;
    let replica2 = DbServer::postgres_replica_of(&primary, "replica-2").await;
    mark(&primary, 1).await;
    wait_mark(&replica1, 1).await;
    wait_mark(&replica2, 1).await;
    assert_eq!(primary.timeline().await, 1);
    eprintln!("three servers up in {:?}", started.elapsed());

    primary.kill9();
    replica2.promote().await;
    assert!(!replica2.is_in_recovery().await);
    assert!(!replica2.is_read_only().await);
    mark(&replica2, 2).await;
    app_write(&replica2).await.unwrap();
    assert_eq!(replica2.timeline().await, 2);
    assert!(replica1.is_in_recovery().await);

    // Restarted as it was, the old primary knows nothing of the promotion: two writers.
    primary.start().await;
    assert!(!primary.is_in_recovery().await);
    assert!(!primary.is_read_only().await);
    assert_eq!(primary.timeline().await, 1);
    mark(&primary, 3).await;
    app_write(&primary).await.unwrap();
    assert_eq!(marks(&primary, 2).await, 0);
    assert_eq!(marks(&replica2, 3).await, 0);

    primary.make_replica_of(&replica2).await;
    assert!(primary.is_in_recovery().await);
    assert!(primary.is_read_only().await);
    assert_eq!(marks(&primary, 2).await, 1);
    assert_eq!(
        marks(&primary, 3).await,
        0,
        "the split-brain write survived"
    );
    mark(&replica2, 4).await;
    wait_mark(&primary, 4).await;
    assert!(app_write(&primary).await.is_err());

    // The rejoined replica is a server like the others: a crash and a restart keep it following.
    primary.kill9();
    primary.start().await;
    assert!(primary.is_in_recovery().await);
    mark(&replica2, 5).await;
    wait_mark(&primary, 5).await;
    eprintln!("done in {:?}", started.elapsed());
}

#[actix_rt::test]
async fn mariadb_replica_follows_by_gtid_and_is_promoted() {
    let started = Instant::now();
    let mut primary = DbServer::mariadb_primary_for_replication("primary").await;
    create_marks(&primary).await;
    let mut replica = DbServer::mariadb_replica_of(&primary, "replica").await;
    eprintln!("two servers up in {:?}", started.elapsed());

    assert!(!primary.is_in_recovery().await);
    assert!(!primary.is_read_only().await);
    assert!(replica.is_in_recovery().await);
    assert!(replica.is_read_only().await);
    let status = replica.replica_status().await;
    assert_eq!(status["Slave_IO_Running"], "Yes", "{status:?}");
    assert_eq!(status["Slave_SQL_Running"], "Yes", "{status:?}");
    assert_eq!(status["Using_Gtid"], "Slave_Pos", "{status:?}");
    assert_eq!(
        status["Master_Port"],
        primary.port().to_string(),
        "{status:?}"
    );
    assert!(primary.replica_status().await.is_empty());

    // The primary's own setup reached the replica through the binary log.
    assert_eq!(
        replica
            .admin_count("SELECT CAST(count(*) AS SIGNED) FROM app.whoami WHERE name = 'primary'")
            .await,
        1
    );
    mark(&primary, 1).await;
    wait_mark(&replica, 1).await;
    let refused = app_write(&replica).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("read-only")),
        "{refused:?}"
    );
    app_write(&primary).await.unwrap();

    // A crashed replica comes back read-only and following.
    replica.kill9();
    replica.start().await;
    assert!(replica.is_read_only().await);
    mark(&primary, 2).await;
    wait_mark(&replica, 2).await;

    primary.kill9();
    replica.promote().await;
    assert!(!replica.is_in_recovery().await);
    assert!(!replica.is_read_only().await);
    app_write(&replica).await.unwrap();
    mark(&replica, 3).await;

    // A promoted replica stays a writer across a restart.
    replica.kill9();
    replica.start().await;
    assert!(!replica.is_read_only().await);
    assert!(replica.replica_status().await.is_empty());
    assert_eq!(marks(&replica, 3).await, 1);
    eprintln!("done in {:?}", started.elapsed());
}
