//! How long one flag switch takes through [`UnleashClient`], against a real Unleash 7.5.1, and
//! what the client adds over a bare HTTP request.
//!
//! Starts Unleash (and its PostgreSQL) through the test kit, creates a flag, then measures, in
//! the same run and against the same server:
//! 1. `UnleashClient::set_flag`: the switch plus the confirming read-back (what the action does);
//! 2. `UnleashClient::switch_flag`: the switch alone;
//! 3. the same POST through a plain `reqwest::Client`.
//!
//! Each series alternates on and off and starts with a few unmeasured warm-up calls (connection
//! set-up, API detection). Run with `cargo run --release --example toggle_latency [COUNT]`
//! (default 200 per series).

use std::time::{Duration, Instant};
use testkit::unleash::{UnleashServer, UnleashVersion};
use unleash_remediation_service::unleash::UnleashClient;

const ENVIRONMENT: &str = "development";
const WARM_UP: usize = 10;

fn main() -> anyhow::Result<()> {
    let count: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200,
    };
    let started = Instant::now();
    let server = UnleashServer::start(UnleashVersion::V7)?;
    println!(
        "Unleash {} on {} started in {:.1?}",
        server.version().npm_version(),
        server.base_url(),
        started.elapsed()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(measure(&server, count));
    drop(server);
    result
}

async fn measure(server: &UnleashServer, count: usize) -> anyhow::Result<()> {
    let client = UnleashClient::new(server.admin_config())?;
    let flag = format!(
        "Latency-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    client.create_flag(&flag).await?;

    let confirmed = series(count, |on| {
        let client = client.clone();
        let flag = flag.clone();
        async move {
            client
                .set_flag(&flag, ENVIRONMENT, on)
                .await
                .map_err(Into::into)
        }
    })
    .await?;

    let unconfirmed = series(count, |on| {
        let client = client.clone();
        let flag = flag.clone();
        async move {
            client
                .switch_flag(&flag, ENVIRONMENT, on)
                .await
                .map_err(Into::into)
        }
    })
    .await?;

    let plain_http = reqwest::Client::new();
    let token = server.admin_token().to_owned();
    let base = server.base_url();
    let plain = series(count, |on| {
        let http = plain_http.clone();
        let url = format!(
            "{base}/admin/projects/default/features/{flag}/environments/{ENVIRONMENT}/{}",
            if on { "on" } else { "off" }
        );
        let token = token.clone();
        async move {
            let status = http
                .post(url)
                .header("Authorization", token)
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .await?
                .status();
            anyhow::ensure!(status.is_success(), "plain POST answered {status}");
            Ok(())
        }
    })
    .await?;

    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "\n{count} switches per series, alternating on/off, {profile} build, one connection, sequential"
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9}",
        "series", "p50 ms", "p99 ms", "max ms", "mean ms"
    );
    report("UnleashClient::set_flag (switch + read-back)", &confirmed);
    report("UnleashClient::switch_flag (switch only)", &unconfirmed);
    report("plain reqwest POST", &plain);
    Ok(())
}

/// Runs `op` WARM_UP times unmeasured, then `count` times measured, alternating the state.
async fn series<F, Fut>(count: usize, op: F) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for i in 0..WARM_UP {
        op(i % 2 == 0).await?;
    }
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        op(i % 2 == 0).await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

fn report(name: &str, samples: &[Duration]) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{name:<44} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        pct(0.50),
        pct(0.99),
        ms[ms.len() - 1],
        mean
    );
}
