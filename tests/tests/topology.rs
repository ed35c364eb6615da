//! Replication clusters on real servers: PostgreSQL streaming replicas made with `pg_basebackup -R`
//! and promoted with `pg_ctl promote`, MariaDB GTID replicas promoted by hand. Writes follow the
//! promoted node, the old primary restarted writable (a split brain) is fenced and gets no writes, and
//! the seed's two independent databases keep failing back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::core::config::Failovers;
use dbfailover::sqlx::sqlx::{self, ConnectOptions, MySql, Postgres};
use dbfailover::{ActiveRole, Config, RoutedPool, Schedule};
use dbfailover_tests::events::Events;
use dbfailover_tests::server::{DbServer, Kind};
use std::time::{Duration, Instant};

/// Interval 100 ms, timeout 300 ms, thresholds 3 / 2, fast interval 20 ms.
fn config(primary: &DbServer, failovers: &[&DbServer]) -> Config {
    let mut config = Config::with_databases(
        (primary.name(), primary.url()),
        (failovers[0].name(), failovers[0].url()),
    );
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
    config.failover.blocking = "blocking".into();
    let h = &mut config.health_check;
    h.interval = Schedule::Every(Duration::from_millis(100));
    h.timeout = Duration::from_millis(300);
    h.failure_threshold = 3;
    h.recovery_threshold = 2;
    h.fast_interval = Duration::from_millis(20);
    config
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

#[actix_rt::test]
async fn postgres_writes_follow_a_promoted_replica_and_the_restarted_old_primary_is_fenced() {
    let mut primary = DbServer::postgres_primary_for_replication("main_db").await;
    create_writes(&primary).await;
    let (replica1, replica2) = tokio::join!(
        DbServer::postgres_replica_of(&primary, "replica1_db"),
        DbServer::postgres_replica_of(&primary, "replica2_db")
    );
    let config = config(&primary, &[&replica1, &replica2]);
    let engine = dbfailover::builder(config.clone())
        .unwrap()
        .build()
        .unwrap()
        .start();
    let (listener, events) = Events::start();
    engine.subscribe(listener).await.unwrap();
    let writer = Writer::Pg(RoutedPool::connect_lazy(engine.clone(), &config, None).unwrap());
    writer
        .until_written_on(primary.port(), Duration::from_secs(10))
        .await;

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
    assert!(seen.contains(&"ConnectionFenced"), "{seen:?}");

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
    let engine = dbfailover::builder(config.clone())
        .unwrap()
        .build()
        .unwrap()
        .start();
    let (listener, events) = Events::start();
    engine.subscribe(listener).await.unwrap();
    let writer = Writer::My(RoutedPool::connect_lazy(engine.clone(), &config, None).unwrap());
    writer
        .until_written_on(primary.port(), Duration::from_secs(10))
        .await;
    // Every instance has seen the replica replicating before the fault.
    tokio::time::sleep(Duration::from_millis(300)).await;

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
