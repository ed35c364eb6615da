//! The failure scenarios against real Postgres servers (see `dbfailover_tests::scenarios`).

use dbfailover_tests::scenarios;
use dbfailover_tests::server::Kind;

#[actix_rt::test]
async fn full_cycle() {
    scenarios::full_cycle(Kind::Postgres).await;
}

#[actix_rt::test]
async fn primary_hangs() {
    scenarios::hang(Kind::Postgres).await;
}

#[actix_rt::test]
async fn primary_flaps() {
    scenarios::flap(Kind::Postgres).await;
}

#[actix_rt::test]
async fn passive_detection() {
    scenarios::passive(Kind::Postgres).await;
}

#[actix_rt::test]
async fn primary_turns_read_only() {
    scenarios::read_only(Kind::Postgres).await;
}

#[actix_rt::test]
async fn one_shot_check() {
    scenarios::one_shot(Kind::Postgres).await;
}

#[actix_rt::test]
async fn slow_health_query_is_stopped_on_the_server_too() {
    scenarios::slow_health_query(Kind::Postgres).await;
}
