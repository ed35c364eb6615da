//! Replication clusters on real servers: PostgreSQL streaming replicas made with `pg_basebackup -R`
//! and promoted with `pg_ctl promote`, MariaDB GTID replicas promoted by hand. Writes follow the
//! promoted node, the old primary restarted writable (a split brain) is fenced and gets no writes, and
//! the seed's two independent databases keep failing back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::core::config::Failovers;
use dbfailover::sqlx::{self, ConnectOptions, MySql, Postgres};
use dbfailover::{ActiveRole, Config, RoutedPool};
use dbfailover_tests::events::Events;
use dbfailover_tests::server::{DbServer, Kind};
use std::time::{Duration, Instant};

/// The test bed's base settings (interval 100 ms, timeout 300 ms, thresholds 3 / 2, fast interval
/// 20 ms) with every failover, in order.
fn config(primary: &DbServer, failovers: &[&DbServer]) -> Config {
    let mut config = dbfailover_tests::scenarios::base_config(primary, failovers[0]);
    for f in &failovers[1..] {
        config.databases.insert(
            f.name().to_owned(),
            dbfailover::DatabaseSettings::new(f.url()),
        );
    }
    config.failover.failover = Failovers::from(
        failovers
            .iter()
            .map(|f| f.name().to_owned())
            .collect::<Vec<_>>(),
    );
    config
}

/// An engine on `config`, its events, a writer through its routed pool that has written once on the
/// primary, and every node's role known.
async fn engine_on(
    config: &Config,
    primary: &DbServer,
) -> (dbfailover::FailoverHandle, Events, Writer) {
    let engine = dbfailover::builder(config.clone())
        .unwrap()
        .build()
        .unwrap()
        .start();
    let (listener, events) = Events::start();
    engine.subscribe(listener).await.unwrap();
    let writer = match primary.kind() {
        Kind::Postgres => {
            Writer::Pg(RoutedPool::connect_lazy(engine.clone(), config, None).unwrap())
        }
        Kind::MariaDb => {
            Writer::My(RoutedPool::connect_lazy(engine.clone(), config, None).unwrap())
        }
    };
    writer
        .until_written_on(primary.port(), Duration::from_secs(10))
        .await;
    every_role_known(&engine).await;
    (engine, events, writer)
}

/// Which server took a write: its port, from the server itself.
enum Writer {
    Pg(RoutedPool<Postgres>),
    My(RoutedPool<MySql>),
}

impl Writer {
    async fn write(&self) -> Option<u16> {
        let port: Result<i64, _> = match self {
            Self::Pg(routed) => {
                routed
                    .with_connection(async |conn| {
                        sqlx::query("INSERT INTO writes VALUES (1)")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query_scalar("SELECT CAST(inet_server_port() AS bigint)")
                            .fetch_one(&mut *conn)
                            .await
                    })
                    .await
            }
            Self::My(routed) => {
                routed
                    .with_connection(async |conn| {
                        sqlx::query("INSERT INTO writes VALUES (1)")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query_scalar("SELECT CAST(@@port AS SIGNED)")
                            .fetch_one(&mut *conn)
                            .await
                    })
                    .await
            }
        };
        port.ok().and_then(|p| u16::try_from(p).ok())
    }

    /// Writes until one lands on `port`; answers how long it took.
    async fn until_written_on(&self, port: u16, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.write().await == Some(port) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "no write reached port {port} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A table of the application's database, made on the writer before its replicas are cloned.
async fn create_writes(server: &DbServer) {
    match server.kind() {
        Kind::Postgres => {
            let url = server.url();
            let options: sqlx::postgres::PgConnectOptions = url.expose().parse().unwrap();
            let mut conn = options.connect().await.unwrap();
            sqlx::query("CREATE TABLE writes (id int)")
                .execute(&mut conn)
                .await
                .unwrap();
            // The probe reads the cluster identity and timeline with pg_monitor's rights.
            server.admin(&["GRANT pg_monitor TO app"]).await;
        }
        Kind::MariaDb => {
            server
                .admin(&[
                    "CREATE TABLE app.writes (id INT)",
                    // SHOW REPLICA STATUS, the replication evidence.
                    "GRANT REPLICA MONITOR ON *.* TO 'app'@'%'",
                ])
                .await;
        }
    }
}

fn names(events: &Events) -> Vec<&'static str> {
    events.names()
}

/// Waits until the engine has checked every node and knows its role.
async fn every_role_known(engine: &dbfailover::FailoverHandle) {
    let started = Instant::now();
    loop {
        let states = engine.connection_states().await.unwrap();
        if states.iter().all(|s| s.state.replication.is_some()) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn postgres_writes_follow_a_promoted_replica_and_the_restarted_old_primary_is_fenced() {
    let mut primary = DbServer::postgres_primary_for_replication("main_db").await;
    create_writes(&primary).await;
    let (replica1, replica2) = tokio::join!(
        DbServer::postgres_replica_of(&primary, "replica1_db"),
        DbServer::postgres_replica_of(&primary, "replica2_db")
    );
    let config = config(&primary, &[&replica1, &replica2]);
    let (engine, events, writer) = engine_on(&config, &primary).await;

    // The primary dies; nothing can take writes until an outside tool promotes a replica.
    primary.kill9();
    let started = Instant::now();
    while engine.active().role != ActiveRole::Blocking {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            names(&events)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The second replica in the list is promoted: writes follow it.
    replica2.promote().await;
    let follow = writer
        .until_written_on(replica2.port(), Duration::from_secs(10))
        .await;
    println!("postgres: promotion -> writes served by the promoted replica: {follow:?}");
    assert_eq!(engine.active().name, "replica2_db");
    let seen = names(&events);
    assert!(seen.contains(&"ReplicaPromoted"), "{seen:?}");
    assert!(seen.contains(&"ConnectionFenced"), "{:?}", events.all());

    // The old primary restarts as it was: writable, on its old timeline. It gets no writes.
    primary.start().await;
    assert!(
        !primary.is_in_recovery().await,
        "the split brain the test needs"
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if let Some(port) = writer.write().await {
            assert_eq!(
                port,
                replica2.port(),
                "a write went to the fenced old primary"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.active().name, "replica2_db");
    let seen = names(&events);
    assert!(seen.contains(&"SplitBrainDetected"), "{seen:?}");
    assert_eq!(
        events.count("SwitchedToPrimaryConnection"),
        0,
        "never back to the old primary: {seen:?}"
    );

    // Made a replica of the new writer, it is HEALTHY, read-only, and still gets no writes.
    primary.make_replica_of(&replica2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let states = engine.connection_states().await.unwrap();
    let main = states.iter().find(|s| s.name == "main_db").unwrap();
    assert_eq!(main.state.status, dbfailover::ConnectionStatus::Healthy);
    assert_eq!(main.state.writable, Some(false));
    assert_eq!(writer.write().await, Some(replica2.port()));
}

#[actix_rt::test]
async fn mariadb_writes_follow_a_promoted_replica_and_the_restarted_old_primary_is_fenced() {
    let mut primary = DbServer::mariadb_primary_for_replication("main_db").await;
    create_writes(&primary).await;
    let replica = DbServer::mariadb_replica_of(&primary, "replica_db").await;
    let config = config(&primary, &[&replica]);
    let (engine, events, writer) = engine_on(&config, &primary).await;

    primary.kill9();
    replica.promote().await;
    let follow = writer
        .until_written_on(replica.port(), Duration::from_secs(10))
        .await;
    println!("mariadb: kill + promotion -> writes served by the promoted replica: {follow:?}");
    let seen = names(&events);
    assert!(seen.contains(&"ReplicaPromoted"), "{seen:?}");
    assert!(seen.contains(&"ConnectionFenced"), "{seen:?}");

    // The old primary restarts writable: fenced, no writes.
    primary.start().await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if let Some(port) = writer.write().await {
            assert_eq!(
                port,
                replica.port(),
                "a write went to the fenced old primary"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.active().name, "replica_db");
    assert_eq!(
        events.count("SwitchedToPrimaryConnection"),
        0,
        "{:?}",
        names(&events)
    );
}

/// Which server served a read: its port.
async fn read_port(routed: &RoutedPool<Postgres>) -> Result<u16, dbfailover::RoutedError> {
    let port: i64 = routed
        .with_read_connection(async |conn| {
            sqlx::query_scalar("SELECT CAST(inet_server_port() AS bigint)")
                .fetch_one(conn)
                .await
        })
        .await?;
    Ok(u16::try_from(port).unwrap_or(0))
}

#[actix_rt::test]
async fn postgres_reads_go_to_replicas_under_the_lag_bound_and_go_on_with_no_writer_left() {
    let mut primary = DbServer::postgres_primary_for_replication("main_db").await;
    create_writes(&primary).await;
    let (replica1, replica2) = tokio::join!(
        DbServer::postgres_replica_of(&primary, "replica1_db"),
        DbServer::postgres_replica_of(&primary, "replica2_db")
    );
    let mut config = config(&primary, &[&replica1, &replica2]);
    config.failover.max_replication_lag = Duration::from_millis(500);
    let (engine, events, writer) = engine_on(&config, &primary).await;
    let routed: RoutedPool<Postgres> =
        RoutedPool::connect_lazy(engine.clone(), &config, None).unwrap();

    // Round robin over both replicas; never the writer while they serve.
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..10 {
        served.insert(read_port(&routed).await.unwrap());
    }
    assert_eq!(
        served,
        [replica1.port(), replica2.port()].into_iter().collect(),
        "reads over both replicas"
    );

    // Replica 1 stops replaying while writes go on: once it is behind the bound, no reads go there.
    replica1.pause_replay().await;
    let paused = Instant::now();
    let mut excluded = None;
    while excluded.is_none() {
        writer.write().await;
        let ports: Vec<u16> = futures_ports(&routed, 6).await;
        if !ports.contains(&replica1.port()) {
            excluded = Some(paused.elapsed());
        }
        assert!(
            paused.elapsed() < Duration::from_secs(10),
            "a lagging replica kept serving reads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "postgres: replay paused -> replica excluded from reads after {:?} (bound 500 ms)",
        excluded.unwrap_or_default()
    );
    replica1.resume_replay().await;
    let resumed = Instant::now();
    loop {
        if futures_ports(&routed, 6).await.contains(&replica1.port()) {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "never back after catching up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // No writer left: writes fail at once, reads go on.
    primary.kill9();
    let started = Instant::now();
    while engine.active().role != ActiveRole::Blocking {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = Instant::now();
    let write = match &writer {
        Writer::Pg(routed) => routed.acquire().await.map(|_| ()),
        Writer::My(_) => unreachable!(),
    };
    assert!(
        matches!(
            write,
            Err(dbfailover::RoutedError::AllConnectionsUnavailable { .. })
        ),
        "{write:?}"
    );
    assert!(
        refused.elapsed() < Duration::from_millis(50),
        "refused at once"
    );
    let port = read_port(&routed).await.unwrap();
    assert!([replica1.port(), replica2.port()].contains(&port));
    // The retry helper on the read route reads too.
    let policy = dbfailover::RetryPolicy {
        purpose: dbfailover::Use::Reads,
        ..dbfailover::RetryPolicy::reads()
    };
    let retried: i64 = routed
        .with_retry(policy, async |conn| {
            sqlx::query_scalar("SELECT CAST(inet_server_port() AS bigint)")
                .fetch_one(conn)
                .await
        })
        .await
        .unwrap();
    assert!([i64::from(replica1.port()), i64::from(replica2.port())].contains(&retried));
    let seen = events.names();
    assert!(
        seen.contains(&"LimitedFunctionalityModeActivated"),
        "{seen:?}"
    );
    assert!(seen.contains(&"ReadOnlyModeActivated"), "{seen:?}");
}

/// The ports that served `n` reads in a row.
async fn futures_ports(routed: &RoutedPool<Postgres>, n: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(port) = read_port(routed).await {
            ports.push(port);
        }
    }
    ports
}

#[actix_rt::test]
async fn mariadb_replication_stopped_for_maintenance_is_no_promotion() {
    let primary = DbServer::mariadb_primary_for_replication("main_db").await;
    create_writes(&primary).await;
    let replica = DbServer::mariadb_replica_of(&primary, "replica_db").await;
    // MariaDB's default: a replica that is not read-only.
    replica.admin(&["SET GLOBAL read_only = 0"]).await;
    let config = config(&primary, &[&replica]);
    let (_engine, events, writer) = engine_on(&config, &primary).await;
    replica.admin(&["STOP SLAVE"]).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            writer.write().await,
            Some(primary.port()),
            "{:?}",
            names(&events)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica.admin(&["START SLAVE"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(writer.write().await, Some(primary.port()));
    let seen = names(&events);
    for event in ["ReplicaPromoted", "ConnectionFenced", "SplitBrainDetected"] {
        assert!(!seen.contains(&event), "{seen:?}");
    }
}
