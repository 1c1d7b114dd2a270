//! `arbiter drill`: fail us-east-1 for real — PostgreSQL primary and standby, db-agents,
//! gateways, probes and the arbiter, all on loopback — and measure detection, fence,
//! promotion, RTO and RPO against `arbiter plan` ([`run`] says what one run does). Writes
//! `report.json` (settings, summary, every run) and `timeline.svg` to `--out`, prints live
//! progress and the predicted vs measured table.
//!
//! Exit codes ([`super::exit`]): 0 every run completed and held the safety claims (RPO 0 when
//! synchronous, nothing acknowledged by the isolated side after the other was granted); 1
//! otherwise; 2 bad flags or a missing prerequisite.

mod edges;
mod link;
mod partition;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::exit::Failure;
use run::{DrillOptions, Fault, Mode, EAST, WEST};

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// Replication: `sync` (synchronous_standby_names, the seed's critical data: RPO 0) or
    /// `async`.
    #[arg(long, value_enum, default_value_t = Mode::Async)]
    mode: Mode,
    /// What happens to us-east-1: `kill` (SIGKILL of database, agent and gateway), `stop`
    /// (SIGSTOP of the same), `partition` (nftables cut it off, replication link cut; needs
    /// root) or `split-brain` (replication link cut, its agent cut off from the arbiter, the
    /// gateway still healthy; needs root).
    #[arg(long, value_enum, default_value_t = Fault::Kill)]
    fault: Fault,
    /// How many drills to run, one after the other.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Writes per second each region's writer attempts.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    rate: u32,
    /// Payload bytes per write (the seed's 1 KB).
    #[arg(long, default_value_t = 1_000)]
    payload_bytes: usize,
    /// Seconds of load before the fault.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// The db-agents' lease TTL in seconds (fractions allowed; `arbiter db-agent`'s default).
    #[arg(long, default_value = "10", value_parser = super::lease::parse_ttl)]
    lease_ttl: Duration,
    /// The probe agents' interval in milliseconds (`arbiter probe`'s default).
    #[arg(long, default_value_t = 1_000)]
    probe_interval_ms: u64,
    /// Round trip between us-east-1 and us-west-2 in milliseconds, added to the replication
    /// link (the seed's 70 ms).
    #[arg(long, default_value_t = 70)]
    link_rtt_ms: u64,
    /// A run fails when us-west-2 has taken no write this many seconds after the fault.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Where runs, report.json and timeline.svg go.
    #[arg(long, default_value = "arbiter-drill")]
    out: PathBuf,
    /// Keep every run's directory (logs, data), not only failed runs'.
    #[arg(long)]
    keep: bool,
}

pub async fn run(args: DrillArgs) -> anyhow::Result<ExitCode> {
    if args.payload_bytes == 0 || args.payload_bytes > 1_000_000 {
        return Err(Failure::usage("--payload-bytes must be 1..=1000000").into());
    }
    if args.probe_interval_ms < 50 {
        return Err(Failure::usage("--probe-interval-ms must be at least 50").into());
    }
    let options = DrillOptions {
        mode: args.mode,
        fault: args.fault,
        runs: args.runs,
        rate: args.rate,
        payload_bytes: args.payload_bytes,
        warmup: Duration::from_secs(args.warmup_secs),
        lease_ttl: args.lease_ttl,
        probe_interval: Duration::from_millis(args.probe_interval_ms),
        link_rtt: Duration::from_millis(args.link_rtt_ms),
        timeout: Duration::from_secs(args.timeout_secs),
        out: args.out.clone(),
        keep: args.keep,
        binary: std::env::current_exe().context("locating the arbiter binary")?,
    };
    let reports = tokio::select! {
        reports = run::run_all(&options) => reports.map_err(|e| Failure::usage(format!("{e:#}")))?,
        () = super::shutdown_signal() => {
            eprintln!("interrupted: stopping what the drill started");
            return Ok(ExitCode::from(super::exit::ERROR));
        }
    };
    let summary = report::summarize(&reports);
    let json_path = options.out.join("report.json");
    let svg_path = options.out.join("timeline.svg");
    let document = json!({
        "settings": {
            "mode": options.mode,
            "fault": options.fault,
            "runs": options.runs,
            "writesPerSec": options.rate,
            "payloadBytes": options.payload_bytes,
            "warmupSecs": args.warmup_secs,
            "leaseTtlMs": options.lease_ttl.as_millis() as u64,
            "probeIntervalMs": args.probe_interval_ms,
            "linkRttMs": args.link_rtt_ms,
            "failedRegion": EAST,
            "standbyRegion": WEST,
        },
        "summary": summary,
        "runs": reports,
    });
    write_durably(
        &json_path,
        serde_json::to_string_pretty(&document)?.as_bytes(),
    )?;
    write_durably(&svg_path, report::svg(&reports).as_bytes())?;

    println!();
    println!(
        "arbiter drill: {:?} replication, fault {:?} at {EAST}, {} run(s), {} completed, {} safe",
        options.mode, options.fault, summary.runs, summary.completed, summary.safe
    );
    print!("{}", report::table(&reports));
    if options.mode == Mode::Async {
        let estimated = summary.completed - summary.runs_without_estimate;
        println!(
            "controller's data-loss estimate below the measured loss: {} of {estimated} run(s) \
             with an estimate (short by at most {} writes)",
            summary.estimate_below_measured, summary.estimate_short_by_max
        );
        if summary.runs_without_estimate > 0 {
            println!(
                "{} run(s) had no failover event, so no estimate: the controller saw {EAST} \
                 healthy, and {WEST} took over when the lease ran out",
                summary.runs_without_estimate
            );
        }
    }
    if options.fault == Fault::Partition || options.fault == Fault::SplitBrain {
        println!(
            "writes acknowledged at {EAST} after {WEST} was granted the lease: {}",
            summary.east_acked_after_west_grant
        );
    }
    println!(
        "clients through {} edge routers: {} request(s) failed after the fault; answered by \
         another region {} after the fault (median; max {})",
        run::EDGE_COUNT,
        summary.edge_failed_after_fault,
        ms_text(summary.edge_client_shift_median_ms),
        ms_text(summary.edge_client_shift_max_ms),
    );
    println!("report: {}", json_path.display());
    println!("timeline: {}", svg_path.display());
    Ok(if summary.safe == summary.runs {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::ERROR)
    })
}

fn ms_text(ms: Option<u64>) -> String {
    ms.map_or("-".to_string(), |ms| format!("{:.3} s", ms as f64 / 1000.0))
}

/// Temp file, fsync, rename, directory fsync: a report is either whole or absent.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
