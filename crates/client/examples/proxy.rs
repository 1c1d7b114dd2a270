//! A regional database proxy that writes only while it holds the resource's write lease.
//!
//! `cargo run -p arbiter-client --example proxy -- --region us-east-1 --seconds 30`
//! (against `arbiter up`; `--endpoints` or `ARBITER_ENDPOINTS` for another cluster).
//!
//! Standby until the lease is granted; then one write every `--write-every-ms`, each checked
//! against the lease's validity and carrying its fencing token to the (here: in-memory,
//! [`FencedResource`]-guarded) database. Writes stop the instant the lease is lost. A lease
//! that lapsed (arbiter unreachable) is asked for again; a lease the arbiter took away (revoked
//! or fenced, e.g. by the DR controller) is not — the proxy stays read-only for the rest of the
//! run rather than fight the operator. On exit it releases the lease.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_client::{
    ArbiterClient, FencedResource, KeeperOptions, LeaseKeeper, LeaseSpec, LossCause, Refusal,
};
use clap::Parser;
use tokio::time::{sleep, sleep_until, Instant};

#[derive(Parser, Debug)]
#[command(about = "A regional proxy that writes only while it holds the write lease")]
struct Args {
    #[command(flatten)]
    cluster: common::Cluster,
    /// The database the proxy fronts.
    #[arg(long, default_value = "db/orders")]
    resource: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Holder name; default `proxy-<region>-<pid>`.
    #[arg(long)]
    holder: Option<String>,
    #[arg(long, default_value_t = 3000)]
    ttl_ms: u64,
    /// Renewal interval; default TTL/3.
    #[arg(long)]
    renew_every_ms: Option<u64>,
    #[arg(long, default_value_t = 250)]
    write_every_ms: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

/// What ended a spell of holding the lease.
enum Spell {
    /// The run is over (time, or Ctrl-C); the lease was released.
    Done,
    /// Lost without being taken away: ask again.
    Lapsed,
    /// The arbiter took it away: stay read-only.
    Fenced,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let holder = args
        .holder
        .clone()
        .unwrap_or_else(|| format!("proxy-{}-{}", args.region, std::process::id()));
    let spec = LeaseSpec::new(
        args.resource.clone(),
        holder.clone(),
        Duration::from_millis(args.ttl_ms),
    )
    .in_region(args.region.clone());
    let options = KeeperOptions {
        renew_every: args.renew_every_ms.map(Duration::from_millis),
        ..KeeperOptions::default()
    };
    let client =
        ArbiterClient::connect(args.cluster.endpoints.clone(), args.cluster.options()?).await?;
    let database = FencedResource::new();
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    say(&format!(
        "{holder}: proxy for {} via {} for {} s",
        args.resource,
        args.cluster.endpoints.join(","),
        args.seconds
    ));

    let mut fenced = false;
    while Instant::now() < end && !fenced {
        let keeper = match LeaseKeeper::acquire(&client, &spec, options.clone()).await {
            Ok(Ok(keeper)) => keeper,
            Ok(Err(refusal)) => {
                say(&format!("standby (read-only): {refusal}"));
                // Ask again when the holder's time may be up, but at least every second.
                let pause = refusal
                    .may_hold_for()
                    .unwrap_or(Duration::from_millis(500))
                    .clamp(Duration::from_millis(100), Duration::from_secs(1));
                tokio::select! {
                    _ = sleep(pause) => {}
                    _ = sleep_until(end) => {}
                    _ = &mut shutdown => break,
                }
                continue;
            }
            Err(error) => {
                say(&format!(
                    "standby (read-only): arbiter unavailable: {error}"
                ));
                tokio::select! {
                    _ = sleep(Duration::from_millis(500)) => {}
                    _ = sleep_until(end) => {}
                    _ = &mut shutdown => break,
                }
                continue;
            }
        };
        say(&format!(
            "ACQUIRED {}: token {}, ttl {} ms — writing",
            keeper.resource(),
            keeper.token(),
            args.ttl_ms
        ));
        let spell = hold(
            &keeper,
            &database,
            Duration::from_millis(args.write_every_ms),
            end,
            &mut shutdown,
        )
        .await;
        match spell {
            Spell::Done => {
                let token = keeper.token();
                match keeper.release().await {
                    Ok(Ok(())) => say(&format!("released token {token}")),
                    Ok(Err(refusal)) => say(&format!("release refused: {refusal}")),
                    Err(error) => say(&format!("release failed (the lease will lapse): {error}")),
                }
                break;
            }
            Spell::Lapsed => continue,
            Spell::Fenced => fenced = true,
        }
    }
    if fenced {
        say("read-only for the rest of the run: the arbiter fenced this proxy");
        tokio::select! {
            _ = sleep_until(end) => {}
            _ = &mut shutdown => {}
        }
    }
    say("stopped");
    Ok(())
}

/// Writes while the lease is valid; returns how the spell ended.
async fn hold(
    keeper: &LeaseKeeper,
    database: &FencedResource,
    write_every: Duration,
    end: Instant,
    shutdown: &mut (impl std::future::Future + Unpin),
) -> Spell {
    let lost = keeper.lost();
    tokio::pin!(lost);
    let mut ticks = tokio::time::interval(write_every);
    let mut writes = 0u64;
    loop {
        tokio::select! {
            // The loss first: when it and a tick are both ready, no write goes out.
            biased;
            cause = &mut lost => {
                say(&format!("LOST token {} ({}): writes stopped after {writes}",
                    keeper.token(), describe(&cause)));
                return match cause {
                    LossCause::Refused(Refusal::StaleToken { current, .. }) => {
                        // The database learns the new epoch too: the old token is dead there.
                        database.observe_epoch(current);
                        Spell::Fenced
                    }
                    LossCause::Refused(_) => Spell::Fenced,
                    _ => Spell::Lapsed,
                };
            }
            _ = sleep_until(end) => return Spell::Done,
            _ = &mut *shutdown => return Spell::Done,
            _ = ticks.tick() => {
                // Checked right before the write: the clock, not the timer task, decides.
                if !keeper.is_valid() {
                    continue;
                }
                match database.write(keeper.token(), || writes += 1) {
                    Ok(()) => say(&format!("write #{writes} with token {}", keeper.token())),
                    Err(stale) => say(&format!("write rejected by the database: {stale}")),
                }
            }
        }
    }
}

fn describe(cause: &LossCause) -> String {
    match cause {
        LossCause::DeadlinePassed => "no renewal before the deadline".into(),
        LossCause::Refused(refusal) => format!("refused by the arbiter: {refusal}"),
        LossCause::Released => "released".into(),
        LossCause::Stopped => "keeper stopped".into(),
    }
}

/// One line, prefixed with the UTC wall-clock time (ms), so that it can be lined up with
/// other processes' logs.
fn say(line: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() % 86_400_000;
    println!(
        "{:02}:{:02}:{:02}.{:03} {line}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}
