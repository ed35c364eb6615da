//! An actix-web service embedding dbfailover: the engine's actors run in actix-web's own `System`,
//! queries go through the routed pool, and limited functionality mode answers 503 at once.
//!
//! ```sh
//! DBFAILOVER_DATABASES__PRIMARY__URL=postgres://app:secret@10.0.0.1/app \
//! DBFAILOVER_DATABASES__FAILOVER__URL=postgres://app:secret@10.0.0.2/app \
//! LISTEN=127.0.0.1:8080 cargo run -p dbfailover-examples --bin actix-web-service
//! curl localhost:8080/whoami
//! ```
//!
//! Each database needs a table `whoami (name text)` holding its name. The configuration is the
//! library's: `DBFAILOVER_CONFIG` may name a file, and any `DBFAILOVER_<SECTION>__<KEY>` variable sets
//! a setting (see `dbfailover_examples::load_config`).

use actix::Actor;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use dbfailover::RoutedPool;
use dbfailover::sqlx::{self, Postgres};
use dbfailover_examples::{EventLog, error_answer, load_config, served_body};

async fn whoami(routed: web::Data<RoutedPool<Postgres>>) -> HttpResponse {
    // Which database served the query, from the database's own data.
    let answer = routed
        .with_connection(async |conn| {
            sqlx::query_scalar::<_, String>("SELECT name FROM whoami")
                .fetch_one(conn)
                .await
        })
        .await;
    match answer {
        Ok(name) => HttpResponse::Ok()
            .content_type("application/json")
            .body(served_body(&name)),
        // Limited mode answers 503 at once: no query was sent anywhere.
        Err(error) => {
            let (status, body) = error_answer(&error);
            HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
            .content_type("application/json")
            .body(body)
        }
    }
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = load_config()?;
    let engine = dbfailover::builder(config.clone())?.build()?.start();
    engine.subscribe(EventLog.start().recipient()).await?;
    let routed = web::Data::new(RoutedPool::<Postgres>::connect_lazy(
        engine.clone(),
        &config,
        None,
    )?);
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(routed.clone())
            .route("/whoami", web::get().to(whoami))
    })
    .workers(1)
    .bind(&listen)?;
    for addr in server.addrs() {
        println!("listening on {addr}");
    }
    server.run().await?;
    Ok(())
}
