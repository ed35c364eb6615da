//! The Redis and memcached stores against real servers, each test on a server of its own (started on
//! a free port of 127.0.0.1 and killed at the end). A test whose server binary is not installed says
//! so and passes.

#![cfg(any(feature = "redis", feature = "memcached"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_core::ConnectionStatus;
use dbfailover_core::record::{
    CasOutcome, ConnectionEntry, Expect, FleetRecord, Record, RecordKey, Slot, Version, Write,
};
use dbfailover_engine::StateStore;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `program` with the arguments `args(port)` gives, on a free port; `None` if the program
    /// is not installed.
    fn start(program: &str, args: impl Fn(u16) -> Vec<String>) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        assert!(port != 6379 && port != 11211);
        let child = match Command::new(program)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("{program} is not installed: test skipped");
                return None;
            }
            Err(e) => panic!("starting {program}: {e}"),
        };
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{program} did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TTL: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(2);

fn main_key() -> RecordKey {
    RecordKey::Connection("main".into())
}

fn version(counter: u64, write_id: u64) -> Version {
    Version { counter, write_id }
}

/// A write of connection `main` with a seed, made by the write `v`.
fn conn_write(expect: Expect, v: Version) -> Write {
    Write {
        key: main_key(),
        expect,
        value: Record::Connection(ConnectionEntry::default()).encode(v),
        seed: Some((ConnectionStatus::Down, 3)),
    }
}

fn fleet_write(expect: Expect, v: Version) -> Write {
    Write {
        key: RecordKey::Fleet,
        expect,
        value: Record::Fleet(FleetRecord::default()).encode(v),
        seed: None,
    }
}

async fn load(store: &dyn StateStore, keys: &[RecordKey]) -> Vec<Slot> {
    store.load(keys).await.expect("load")
}

async fn cas(store: &dyn StateStore, writes: &[Write]) -> CasOutcome {
    store
        .compare_and_set(writes)
        .await
        .expect("compare-and-set")
}

/// What every store must do: all-or-none compare-and-set, conflict answers, foreign records kept.
async fn compare_and_set_semantics(store: &dyn StateStore) {
    let keys = [main_key(), RecordKey::Fleet];
    assert_eq!(load(store, &keys).await, vec![Slot::Missing; 2]);
    let v1 = version(1, 0xa1);
    assert_eq!(
        cas(store, &[conn_write(Expect::Missing, v1)]).await,
        CasOutcome::Written
    );
    let slots = load(store, &keys).await;
    assert_eq!(slots[0].version(), Some(v1));
    assert_eq!(slots[1], Slot::Missing);
    // One record not as expected: nothing written, every slot answered in order.
    let stale = [
        fleet_write(Expect::Missing, v1),
        conn_write(Expect::Missing, version(2, 0xb2)),
    ];
    let CasOutcome::Conflict(found) = cas(store, &stale).await else {
        panic!("a stale write was accepted");
    };
    assert_eq!(found[0], Slot::Missing);
    assert_eq!(found[1].version(), Some(v1));
    assert_eq!(load(store, &[RecordKey::Fleet]).await, vec![Slot::Missing]);
    let v2 = version(2, 0xb2);
    let next = [
        conn_write(Expect::after(v1), v2),
        fleet_write(Expect::Missing, v2),
    ];
    assert_eq!(cas(store, &next).await, CasOutcome::Written);
    let slots = load(store, &keys).await;
    assert_eq!(
        slots.iter().map(Slot::version).collect::<Vec<_>>(),
        vec![Some(v2), Some(v2)]
    );
    // The same expectation again: the record moved on.
    assert!(matches!(
        cas(store, &[conn_write(Expect::after(v1), version(3, 3))]).await,
        CasOutcome::Conflict(ref s) if s[0].version() == Some(v2)
    ));
}

/// Two writers expecting the same thing: one wins, the other is told what the winner wrote.
async fn concurrent_writers(first: &dyn StateStore, second: &dyn StateStore) {
    for round in 1..=20u64 {
        let keys = [RecordKey::Connection(format!("race{round}").into())];
        let write = |id: u64| Write {
            key: keys[0].clone(),
            expect: Expect::Missing,
            value: Record::Connection(ConnectionEntry::default()).encode(version(1, id)),
            seed: Some((ConnectionStatus::Healthy, 0)),
        };
        let (a, b) = (write(1), write(2));
        let (ra, rb) = tokio::join!(
            first.compare_and_set(std::slice::from_ref(&a)),
            second.compare_and_set(std::slice::from_ref(&b))
        );
        let (winner, loser) = match (ra.expect("first"), rb.expect("second")) {
            (CasOutcome::Written, CasOutcome::Conflict(found)) => (a, found),
            (CasOutcome::Conflict(found), CasOutcome::Written) => (b, found),
            other => panic!("round {round}: {other:?}"),
        };
        let winner_slot = Slot::decode(&winner.key, Some(winner.value.as_bytes()));
        assert_eq!(loser, vec![winner_slot.clone()]);
        assert_eq!(load(first, &keys).await, vec![winner_slot]);
    }
}

#[cfg(feature = "redis")]
mod redis_store {
    use super::*;
    use dbfailover_core::record::Notice;
    use dbfailover_store::RedisStore;
    use deadpool_redis::redis::{self, aio::MultiplexedConnection};
    use tokio::sync::broadcast;

    fn start() -> Option<Server> {
        Server::start("redis-server", |port| {
            [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .map(str::to_owned)
            .to_vec()
        })
    }

    fn url(server: &Server) -> String {
        format!("redis://127.0.0.1:{}/0", server.port)
    }

    fn store(server: &Server) -> RedisStore {
        RedisStore::new(&url(server), "p", TTL, TIMEOUT).expect("store")
    }

    async fn raw(server: &Server) -> MultiplexedConnection {
        redis::Client::open(url(server))
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connection")
    }

    async fn run<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&[u8]]) -> T {
        let mut command = redis::cmd(std::str::from_utf8(args[0]).expect("name"));
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async(conn).await.expect("command")
    }

    async fn commands_processed(conn: &mut MultiplexedConnection) -> u64 {
        let info: String = run(conn, &[b"INFO", b"stats"]).await;
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("total_commands_processed")
    }

    #[tokio::test]
    async fn compare_and_set_and_load() {
        let Some(server) = start() else { return };
        let store = store(&server);
        compare_and_set_semantics(&store).await;
        let mut conn = raw(&server).await;
        let status: String = run(&mut conn, &[b"GET", b"p_conn_status_main"]).await;
        let failures: String = run(&mut conn, &[b"GET", b"p_conn_failure_count_main"]).await;
        assert_eq!((status.as_str(), failures.as_str()), ("DOWN", "3"));
        let ttl: i64 = run(&mut conn, &[b"PTTL", b"p_conn_state_main"]).await;
        assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
        let ttl: i64 = run(&mut conn, &[b"PTTL", b"p_conn_status_main"]).await;
        assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
        // No seed for the fleet record.
        let keys: Vec<String> = run(&mut conn, &[b"KEYS", b"*"]).await;
        assert_eq!(keys.len(), 4, "{keys:?}");
    }

    #[tokio::test]
    async fn a_wrong_typed_key_reads_as_missing_and_is_replaced() {
        let Some(server) = start() else { return };
        let store = store(&server);
        let mut conn = raw(&server).await;
        let _: i64 = run(&mut conn, &[b"LPUSH", b"p_conn_state_main", b"x"]).await;
        assert_eq!(load(&store, &[main_key()]).await, vec![Slot::Missing]);
        assert!(matches!(
            cas(&store, &[conn_write(Expect::Unreadable, version(1, 1))]).await,
            CasOutcome::Conflict(ref s) if s == &[Slot::Missing]
        ));
        let v = version(1, 1);
        assert_eq!(
            cas(&store, &[conn_write(Expect::Missing, v)]).await,
            CasOutcome::Written
        );
        assert_eq!(load(&store, &[main_key()]).await[0].version(), Some(v));
    }

    #[tokio::test]
    async fn garbage_is_unreadable_and_replaced() {
        let Some(server) = start() else { return };
        let store = store(&server);
        let mut conn = raw(&server).await;
        for garbage in [
            &b""[..],
            b"HEALTHY 0 0 1",
            b"\xff\x00dbfo2 1 ab ",
            b"dbfo02 1 ab x",
        ] {
            let _: () = run(&mut conn, &[b"SET", b"p_conn_state_main", garbage]).await;
            assert_eq!(
                load(&store, &[main_key()]).await,
                vec![Slot::Unreadable { header: None }],
                "{garbage:?}"
            );
            assert_eq!(
                cas(&store, &[conn_write(Expect::Missing, version(1, 1))]).await,
                CasOutcome::Conflict(vec![Slot::Unreadable { header: None }])
            );
            assert_eq!(
                cas(&store, &[conn_write(Expect::Unreadable, version(1, 1))]).await,
                CasOutcome::Written
            );
        }
        // A current header with a bad body: replaced by a write expecting its write id.
        let bad = b"dbfo2 7 00000000000000ff c MAYBE \xff";
        let _: () = run(&mut conn, &[b"SET", b"p_conn_state_main", bad]).await;
        let slot = Slot::Unreadable {
            header: Some("00000000000000ff".to_owned()),
        };
        assert_eq!(load(&store, &[main_key()]).await, vec![slot.clone()]);
        for wrong in [Expect::Unreadable, Expect::Header("ff".to_owned())] {
            assert_eq!(
                cas(&store, &[conn_write(wrong, version(8, 1))]).await,
                CasOutcome::Conflict(vec![slot.clone()])
            );
        }
        let expect = Expect::replacing(&slot).expect("replaceable");
        assert_eq!(
            cas(&store, &[conn_write(expect, version(8, 1))]).await,
            CasOutcome::Written
        );
    }

    #[tokio::test]
    async fn a_foreign_record_is_never_overwritten() {
        let Some(server) = start() else { return };
        let store = store(&server);
        let mut conn = raw(&server).await;
        let foreign = b"dbfo3 1 ab x";
        let _: () = run(&mut conn, &[b"SET", b"p_conn_state_main", foreign]).await;
        for expect in [
            Expect::Missing,
            Expect::Unreadable,
            Expect::Header("ab".into()),
        ] {
            assert_eq!(
                cas(&store, &[conn_write(expect, version(1, 1))]).await,
                CasOutcome::Conflict(vec![Slot::Foreign { format: 3 }])
            );
        }
        let kept: Vec<u8> = run(&mut conn, &[b"GET", b"p_conn_state_main"]).await;
        assert_eq!(kept, foreign);
        let seed: Option<String> = run(&mut conn, &[b"GET", b"p_conn_status_main"]).await;
        assert_eq!(seed, None);
    }

    #[tokio::test]
    async fn two_writers_one_wins() {
        let Some(server) = start() else { return };
        concurrent_writers(&store(&server), &store(&server)).await;
    }

    async fn subscribed(server: &Server) {
        let mut conn = raw(server).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, count): (String, u64) =
                run(&mut conn, &[b"PUBSUB", b"NUMSUB", b"p_changes"]).await;
            if count > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the change feed never subscribed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn next(changes: &mut broadcast::Receiver<Notice>) -> Notice {
        tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("a notice within 5 s")
            .expect("the feed is open")
    }

    #[tokio::test]
    async fn writes_are_announced_with_their_slots() {
        let Some(server) = start() else { return };
        let writer = store(&server);
        let reader = store(&server);
        let mut changes = reader.changes().expect("redis pushes changes");
        subscribed(&server).await;
        let writes = [
            conn_write(Expect::Missing, version(1, 5)),
            fleet_write(Expect::Missing, version(1, 5)),
        ];
        assert_eq!(cas(&writer, &writes).await, CasOutcome::Written);
        let expected = writes
            .iter()
            .map(|w| {
                (
                    w.key.clone(),
                    Slot::decode(&w.key, Some(w.value.as_bytes())),
                )
            })
            .collect();
        assert_eq!(next(&mut changes).await, Notice::Written(expected));
        // A conflict announces nothing; a message that is not a notice asks for a reload.
        assert!(matches!(
            cas(&writer, &writes).await,
            CasOutcome::Conflict(_)
        ));
        let mut conn = raw(&server).await;
        let _: i64 = run(&mut conn, &[b"PUBLISH", b"p_changes", b"main"]).await;
        assert_eq!(next(&mut changes).await, Notice::Resync);
        // The subscription is cut: after reconnecting, the feed asks for a reload.
        let _: i64 = run(&mut conn, &[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]).await;
        assert_eq!(next(&mut changes).await, Notice::Resync);
        subscribed(&server).await;
        let v2 = version(2, 6);
        let again = [conn_write(Expect::after(version(1, 5)), v2)];
        assert_eq!(cas(&writer, &again).await, CasOutcome::Written);
        let Notice::Written(slots) = next(&mut changes).await else {
            panic!("not a write notice");
        };
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].1.version(), Some(v2));
    }

    #[tokio::test]
    async fn a_lost_connection_is_replaced_by_the_next_call() {
        let Some(server) = start() else { return };
        let store = store(&server);
        assert_eq!(
            cas(&store, &[conn_write(Expect::Missing, version(1, 1))]).await,
            CasOutcome::Written
        );
        let mut conn = raw(&server).await;
        let _: i64 = run(&mut conn, &[b"CLIENT", b"KILL", b"TYPE", b"normal"]).await;
        // The first call may notice the loss; the next one works again.
        let _ = store.load(&[main_key()]).await;
        assert_eq!(
            load(&store, &[main_key()]).await[0].version(),
            Some(version(1, 1))
        );
    }

    #[tokio::test]
    async fn one_write_and_one_load_cost_few_commands() {
        let Some(server) = start() else { return };
        let store = store(&server);
        let mut conn = raw(&server).await;
        // Connect and load the script first.
        assert_eq!(
            cas(&store, &[conn_write(Expect::Missing, version(1, 1))]).await,
            CasOutcome::Written
        );
        let before = commands_processed(&mut conn).await;
        let write = conn_write(Expect::after(version(1, 1)), version(2, 2));
        assert_eq!(cas(&store, &[write]).await, CasOutcome::Written);
        let after = commands_processed(&mut conn).await;
        // The first INFO counts itself in the second's answer.
        let write_commands = after - before - 1;
        let before = commands_processed(&mut conn).await;
        assert_eq!(
            load(&store, &[main_key(), RecordKey::Fleet]).await[0].version(),
            Some(version(2, 2))
        );
        let after = commands_processed(&mut conn).await;
        let load_commands = after - before - 1;
        eprintln!("one write: {write_commands} commands; one load: {load_commands}");
        assert!(write_commands <= 6, "{write_commands}");
        assert!(load_commands <= 2, "{load_commands}");
    }
}

#[cfg(feature = "memcached")]
mod memcached_store {
    use super::*;
    use dbfailover_store::MemcachedStore;

    fn start() -> Option<Server> {
        Server::start("memcached", |port| {
            // `-u` only matters when the tests run as root, which memcached refuses without it.
            [
                "-p",
                &port.to_string(),
                "-l",
                "127.0.0.1",
                "-U",
                "0",
                "-u",
                "root",
            ]
            .map(str::to_owned)
            .to_vec()
        })
    }

    fn url(server: &Server) -> String {
        format!("memcache://127.0.0.1:{}", server.port)
    }

    fn store(server: &Server) -> MemcachedStore {
        MemcachedStore::new(&url(server), "p", TTL, TIMEOUT).expect("store")
    }

    fn raw(server: &Server) -> memcache::Client {
        memcache::Client::connect(url(server)).expect("client")
    }

    #[tokio::test]
    async fn compare_and_set_and_load() {
        let Some(server) = start() else { return };
        compare_and_set_semantics(&store(&server)).await;
        let client = raw(&server);
        let status: Option<String> = client.get("p_conn_status_main").expect("get");
        let failures: Option<String> = client.get("p_conn_failure_count_main").expect("get");
        assert_eq!(status.as_deref(), Some("DOWN"));
        assert_eq!(failures.as_deref(), Some("3"));
    }

    #[tokio::test]
    async fn a_garbage_document_is_unreadable_and_replaced() {
        let Some(server) = start() else { return };
        let store = store(&server);
        let client = raw(&server);
        for garbage in [&b"not json"[..], b"", b"[1]", b"\xff"] {
            client.set("p_shared", garbage, 60).expect("set");
            let keys = [main_key(), RecordKey::Fleet];
            assert_eq!(
                load(&store, &keys).await,
                vec![Slot::Unreadable { header: None }; 2],
                "{garbage:?}"
            );
            assert!(matches!(
                cas(&store, &[conn_write(Expect::Missing, version(1, 1))]).await,
                CasOutcome::Conflict(_)
            ));
            assert_eq!(
                cas(&store, &[conn_write(Expect::Unreadable, version(1, 1))]).await,
                CasOutcome::Written
            );
            let slots = load(&store, &keys).await;
            assert_eq!(slots[0].version(), Some(version(1, 1)));
            assert_eq!(slots[1], Slot::Missing);
        }
    }

    #[tokio::test]
    async fn a_foreign_record_is_never_overwritten() {
        let Some(server) = start() else { return };
        let store = store(&server);
        let client = raw(&server);
        let document = serde_json::json!({
            "c:main": {"value": "dbfo3 1 ab x", "expires_at_ms": i64::MAX},
            "f": "garbage entry",
        })
        .to_string();
        client.set("p_shared", document.as_str(), 60).expect("set");
        assert_eq!(
            load(&store, &[main_key(), RecordKey::Fleet]).await,
            vec![
                Slot::Foreign { format: 3 },
                Slot::Unreadable { header: None }
            ]
        );
        for expect in [
            Expect::Missing,
            Expect::Unreadable,
            Expect::Header("ab".into()),
        ] {
            assert!(matches!(
                cas(&store, &[conn_write(expect, version(1, 1))]).await,
                CasOutcome::Conflict(ref s) if s == &[Slot::Foreign { format: 3 }]
            ));
        }
        // Other records are still written beside it.
        assert_eq!(
            cas(&store, &[fleet_write(Expect::Unreadable, version(1, 1))]).await,
            CasOutcome::Written
        );
        assert_eq!(
            load(&store, &[main_key()]).await,
            vec![Slot::Foreign { format: 3 }]
        );
    }

    #[tokio::test]
    async fn two_writers_one_wins() {
        let Some(server) = start() else { return };
        concurrent_writers(&store(&server), &store(&server)).await;
    }
}
