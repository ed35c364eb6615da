//! The test bed itself: servers start, serve, die, freeze, restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_tests::server::{DbServer, Kind};

async fn lifecycle(kind: Kind) {
    let mut server = DbServer::create(kind, "alpha").await;
    assert!(server.app_connections().await >= 0);
    server.kill9();
    server.start().await;
    server.freeze();
    server.thaw();
    server.set_read_only(true).await;
    server.set_read_only(false).await;
}

#[actix_rt::test]
async fn postgres_test_bed_lifecycle() {
    lifecycle(Kind::Postgres).await;
}

#[actix_rt::test]
async fn mariadb_test_bed_lifecycle() {
    lifecycle(Kind::MariaDb).await;
}

#[actix_rt::test]
async fn data_survives_kill9() {
    for kind in [Kind::Postgres, Kind::MariaDb] {
        let mut server = DbServer::create(kind, "alpha").await;
        server.kill9();
        server.start().await;
        let n = match kind {
            Kind::Postgres => {
                use dbfailover::sqlx::{self, ConnectOptions};
                let opts: sqlx::postgres::PgConnectOptions = server.url().expose().parse().unwrap();
                let mut conn = opts.connect().await.unwrap();
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM whoami")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
            }
            Kind::MariaDb => {
                server
                    .admin_count("SELECT CAST(count(*) AS SIGNED) FROM app.whoami")
                    .await
            }
        };
        assert_eq!(n, 1, "{kind:?}\n{}", server.log());
    }
}

// Fault injection, checked as a user of the server would notice it.

use dbfailover::sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use dbfailover::sqlx::postgres::{PgConnectOptions, PgConnection};
use dbfailover::sqlx::{self as sqlx_crate, ConnectOptions};
use dbfailover_tests::cache::{CacheKind, CacheServer, REDIS_PASSWORD};
use dbfailover_tests::server::process_tree;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a query on a frozen server is given before the test concludes that nothing answers.
const FROZEN_WAIT: Duration = Duration::from_millis(1500);

/// The state letter of `/proc/PID/stat` (`None` once the process is reaped).
fn state(pid: u32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.rsplit_once(')')?.1.trim_start().chars().next()
}

fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

fn states(pids: &[u32]) -> Vec<(u32, Option<char>)> {
    pids.iter().map(|&p| (p, state(p))).collect()
}

/// A connection of either kind, to ask `SELECT 1`.
enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
}

impl Conn {
    async fn open(server: &DbServer, kind: Kind) -> Self {
        let url = server.url();
        match kind {
            Kind::Postgres => {
                let opts: PgConnectOptions = url.expose().parse().unwrap();
                Self::Pg(opts.connect().await.unwrap())
            }
            Kind::MariaDb => {
                let opts: MySqlConnectOptions = url.expose().parse().unwrap();
                Self::My(opts.connect().await.unwrap())
            }
        }
    }

    async fn select1(&mut self) -> Result<(), sqlx_crate::Error> {
        match self {
            Self::Pg(c) => sqlx_crate::query("SELECT 1").execute(c).await.map(drop),
            Self::My(c) => sqlx_crate::query("SELECT 1").execute(c).await.map(drop),
        }
    }

    /// The pids of PostgreSQL's processes as the server itself lists them.
    async fn pg_backends(&mut self) -> Vec<u32> {
        let Self::Pg(c) = self else { return Vec::new() };
        let pids: Vec<i32> = sqlx_crate::query_scalar("SELECT pid FROM pg_stat_activity")
            .fetch_all(c)
            .await
            .unwrap();
        pids.into_iter()
            .map(|p| u32::try_from(p).unwrap())
            .collect()
    }
}

/// A connection opened before the freeze stays silent; every process is stopped; after the thaw none
/// is, and the server answers again.
async fn freeze_reaches_open_connections(kind: Kind) {
    let server = DbServer::create(kind, "alpha").await;
    let mut conn = Conn::open(&server, kind).await;
    conn.select1().await.unwrap();
    // Backends first, then the process tree: a short-lived worker listed by one may be gone from
    // the other, never the reverse.
    let backends = conn.pg_backends().await;
    let pids = server.pids();
    assert!(!pids.is_empty(), "{kind:?}: no process found");
    for b in backends.iter().filter(|b| alive(**b)) {
        assert!(
            pids.contains(b),
            "{kind:?}: process {b} of pg_stat_activity is not among {pids:?}"
        );
    }
    if kind == Kind::Postgres {
        // The postmaster, this connection's backend, and the background processes.
        assert!(pids.len() >= 3, "{pids:?}");
    }

    server.freeze();
    // A short-lived worker may have exited before the freeze: only live processes count.
    let running: Vec<_> = states(&pids)
        .into_iter()
        .filter(|(_, s)| s.is_some_and(|s| !matches!(s, 'T' | 'Z' | 'X')))
        .collect();
    assert!(
        running.is_empty(),
        "{kind:?}: not stopped after freeze: {running:?}"
    );
    let answer = tokio::time::timeout(FROZEN_WAIT, conn.select1()).await;
    assert!(
        answer.is_err(),
        "{kind:?}: an open connection answered a frozen server: {answer:?}"
    );
    drop(conn);

    server.thaw();
    let mut after = server.pids();
    after.extend(&pids);
    let stopped: Vec<_> = states(&after)
        .into_iter()
        .filter(|(_, s)| *s == Some('T'))
        .collect();
    assert!(
        stopped.is_empty(),
        "{kind:?}: still stopped after thaw: {stopped:?}"
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        Conn::open(&server, kind).await.select1().await
    })
    .await;
    assert!(
        matches!(answer, Ok(Ok(()))),
        "{kind:?}: no answer after thaw: {answer:?}\n{}",
        server.log()
    );
}

#[actix_rt::test]
async fn postgres_freeze_reaches_open_connections() {
    freeze_reaches_open_connections(Kind::Postgres).await;
}

#[actix_rt::test]
async fn mariadb_freeze_reaches_open_connections() {
    freeze_reaches_open_connections(Kind::MariaDb).await;
}

/// After kill9 no process of the server is left, an open connection fails at once, and the server
/// starts again on its port.
#[actix_rt::test]
async fn postgres_kill9_leaves_no_process() {
    let mut server = DbServer::postgres("alpha").await;
    let mut conn = Conn::open(&server, Kind::Postgres).await;
    conn.select1().await.unwrap();
    // A backend busy in a loop checks for its postmaster's death only when the loop ends.
    let mut busy = Conn::open(&server, Kind::Postgres).await;
    let Conn::Pg(busy_conn) = &mut busy else {
        unreachable!()
    };
    let spin = sqlx_crate::query("DO $$BEGIN LOOP PERFORM 1; END LOOP; END$$").execute(busy_conn);
    let started = tokio::time::timeout(Duration::from_millis(300), spin).await;
    assert!(started.is_err(), "the loop ended: {started:?}");
    let mut pids = server.pids();
    pids.extend(conn.pg_backends().await);
    assert!(pids.len() >= 4, "{pids:?}");

    server.kill9();
    let left: Vec<_> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "alive after kill9: {:?}", states(&left));
    assert!(server.pids().is_empty());
    let answer = tokio::time::timeout(Duration::from_secs(5), conn.select1()).await;
    assert!(
        matches!(answer, Ok(Err(_))),
        "a query on a killed server must fail promptly: {answer:?}"
    );

    server.start().await;
    Conn::open(&server, Kind::Postgres)
        .await
        .select1()
        .await
        .unwrap();
}

/// Sends `request` on `stream` and reads until the answer holds `expect`, or the read times out.
fn ask(stream: &mut TcpStream, request: &str, expect: &str) -> std::io::Result<String> {
    stream.write_all(request.as_bytes())?;
    read_until(stream, expect)
}

fn read_until(stream: &mut TcpStream, expect: &str) -> std::io::Result<String> {
    let mut got = String::new();
    let mut buf = [0u8; 256];
    while !got.contains(expect) {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(got)
}

/// A connection opened before the freeze stays silent; the answer comes after the thaw.
fn cache_freeze(kind: CacheKind) {
    let server = CacheServer::start(kind);
    let url = server.url();
    let port: u16 = url
        .rsplit_once(':')
        .unwrap()
        .1
        .trim_end_matches("/0")
        .parse()
        .unwrap();
    let (request, expect) = match kind {
        CacheKind::Redis => ("PING\r\n", "+PONG"),
        CacheKind::Memcached => ("version\r\n", "VERSION"),
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if kind == CacheKind::Redis {
        ask(&mut stream, &format!("AUTH {REDIS_PASSWORD}\r\n"), "+OK").unwrap();
    }
    ask(&mut stream, request, expect).unwrap();

    server.freeze();
    stream.set_read_timeout(Some(FROZEN_WAIT)).unwrap();
    let answer = ask(&mut stream, request, expect);
    assert!(
        answer.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "{kind:?}: an open connection answered a frozen server: {answer:?}"
    );

    server.thaw();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    read_until(&mut stream, expect)
        .unwrap_or_else(|e| panic!("{kind:?}: no answer after thaw: {e}"));
}

#[test]
fn redis_freeze_reaches_open_connections() {
    cache_freeze(CacheKind::Redis);
}

#[test]
fn memcached_freeze_reaches_open_connections() {
    cache_freeze(CacheKind::Memcached);
}

/// Processes are found by parent pid even when their names hold spaces and parentheses.
#[test]
fn process_tree_reads_odd_process_names() {
    let dir = tempfile::tempdir().unwrap();
    let shell = dir.path().join("s) h (1");
    let sleeper = dir.path().join("z) z (z");
    std::fs::copy("/bin/sh", &shell).unwrap();
    std::fs::copy("/bin/sleep", &sleeper).unwrap();
    // The shell starts a second shell, which starts two sleeps: four processes in all.
    let mut top = Command::new(&shell)
        .arg("-c")
        .arg(r#""$0" -c '"$1" 30 & "$1" 30 & wait' "$0" "$1" & wait"#)
        .arg(&shell)
        .arg(&sleeper)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tree = process_tree(top.id());
    while tree.len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        tree = process_tree(top.id());
    }
    let names: Vec<String> = tree
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default())
        .collect();
    // The sleeps first: each shell then reaps its child and ends, and none is left a zombie.
    let sleeps = tree
        .iter()
        .zip(&names)
        .filter(|(_, n)| n.starts_with("z) z (z"))
        .map(|(p, _)| p.to_string());
    let _ = Command::new("kill").arg("-9").args(sleeps).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while top.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .arg("-9")
        .args(tree.iter().map(u32::to_string))
        .status();
    let _ = top.wait();
    assert_eq!(tree.len(), 4, "{names:?}");
    assert_eq!(tree[0], top.id());
    assert_eq!(
        names.iter().filter(|n| n.starts_with("z) z (z")).count(),
        2,
        "{names:?}"
    );
}
