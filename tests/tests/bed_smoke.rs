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
