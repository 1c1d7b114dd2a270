//! `arbiter-jepsen` command line. For now it offers `check`: judge a recorded history and write
//! the report next to it. Exit status: 0 valid, 1 anomalies found, 3 undecided (a search ran
//! out of budget), 4 the history could not be read; clap's usage errors exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_jepsen::checker::{self, availability, linearizable, CheckConfig, Verdict};
use arbiter_jepsen::history::History;
use arbiter_jepsen::report;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Fault-injecting verification harness for arbiter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every checker on a recorded history and write results.json, summary.txt and
    /// timeline.svg.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The history, one JSON op per line.
    history: PathBuf,
    /// Where to write the report; defaults to the history's directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Linearizability search steps per key before giving up as unknown.
    #[arg(long, default_value_t = linearizable::Budget::default().max_steps_per_key)]
    lin_budget: u64,
    /// Shortest gap without an ok completion that counts as unavailability.
    #[arg(long, default_value_t = 1_000)]
    min_window_ms: u64,
    /// Unavailable windows longer than this are anomalies.
    #[arg(long)]
    max_window_ms: Option<u64>,
    /// Recoveries after a heal slower than this (or missing) are anomalies.
    #[arg(long)]
    max_recovery_ms: Option<u64>,
}

fn main() -> ExitCode {
    let Command::Check(args) = Cli::parse().command;
    match check(&args) {
        Ok(Verdict::Valid) => ExitCode::SUCCESS,
        Ok(Verdict::Invalid) => ExitCode::from(1),
        Ok(Verdict::Unknown) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(4)
        }
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<Verdict> {
    let ms = |v: u64| v.saturating_mul(1_000_000);
    let config = CheckConfig {
        linearizability: linearizable::Budget {
            max_steps_per_key: args.lin_budget,
        },
        availability: availability::Bounds {
            min_window_ns: ms(args.min_window_ms),
            max_window_ns: args.max_window_ms.map(ms),
            max_recovery_ns: args.max_recovery_ms.map(ms),
        },
    };
    let history = History::read_jsonl(&args.history)?;
    let results = checker::check_all(&history, &config)
        .with_context(|| format!("reading fault windows of {}", args.history.display()))?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => args
            .history
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default(),
    };
    let files = report::write(&out, &history, &results)
        .with_context(|| format!("writing the report into {}", out.display()))?;
    print!("{}", files.summary);
    println!(
        "\nwrote {}, {}, {}",
        files.results_json.display(),
        files.summary_txt.display(),
        files.timeline_svg.display()
    );
    Ok(results.verdict)
}
