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
                use dbfailover::sqlx::sqlx::{self, ConnectOptions};
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
