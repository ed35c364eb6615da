//! The engine on a thread it owns, used from a plain tokio service on other threads (real time).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, config};
use dbfailover_core::ActiveRole;
use dbfailover_engine::FailoverSystem;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokio_service_drives_an_engine_on_its_own_thread() {
    let primary = Scripted::new(Mode::Up);
    let handle = FailoverSystem::builder(config())
        .probe("main", primary.clone())
        .probe("standby", Scripted::new(Mode::Up))
        .build()
        .unwrap()
        .start_in_thread()
        .unwrap();
    fn assert_send_sync<T: Send + Sync + Clone>(_: &T) {}
    assert_send_sync(&handle);

    let active = handle.active_connection().await.unwrap();
    assert_eq!(active.role, ActiveRole::Primary);
    primary.set(Mode::Refuse);
    let other = handle.clone();
    let switched = tokio::spawn(async move {
        for _ in 0..200 {
            if other.active().role == ActiveRole::Failover {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    assert!(
        switched.await.unwrap(),
        "switched within 2 s (3 checks at 100 ms)"
    );
    assert_eq!(handle.active_connection().await.unwrap().epoch, 1);
    assert!(handle.clone().shutdown().await, "stopped in time");
    assert!(
        handle.active_connection().await.is_err(),
        "stopped engines answer an error, not a hang"
    );
}
