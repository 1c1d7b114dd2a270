//! `arbiter config check FILE` and `arbiter config show [serve flags]`: what a node would run
//! with, without starting it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::exit::Failure;
use super::output::OutputArgs;
use super::serve::ServeArgs;
use crate::config::{RawNodeConfig, RawRaftConfig};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Parse and validate a node config file as `serve --config` would; exit 1 with the reason
    /// when it would not start.
    Check {
        /// The node config file (TOML).
        file: PathBuf,
    },
    /// Print the effective node config: the --config file, the flags given here over it (as
    /// `serve` takes them), and the defaults filled in. TOML, or JSON with --output json.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    serve: Box<ServeArgs>,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check { file } => {
            let raw = RawNodeConfig::from_file(&file)
                .with_context(|| format!("{} does not load", file.display()))?;
            let config = raw
                .validate()
                .with_context(|| format!("{} is not a valid node config", file.display()))?;
            println!(
                "{}: ok — node {} in {}, {} peer(s), TLS {}, profile {:?}, data dir {}",
                file.display(),
                config.node_id,
                config.region,
                config.peers.len(),
                if config.tls.is_some() { "on" } else { "off" },
                config.profile,
                config.data_dir.display(),
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Show(args) => {
            let raw = args.serve.into_raw()?;
            let effective = effective(raw)?;
            if args.output.is_json() {
                println!("{}", serde_json::to_string_pretty(&effective)?);
            } else {
                print!("{}", toml::to_string(&effective)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `raw` with every default `validate` chose written in, so what is printed is what runs.
fn effective(raw: RawNodeConfig) -> anyhow::Result<RawNodeConfig> {
    let config = raw
        .clone()
        .validate()
        .map_err(|e| Failure::usage(format!("the config would not start a node: {e}")))?;
    let timing = config.timing;
    Ok(RawNodeConfig {
        node_id: Some(config.node_id),
        region: Some(config.region.clone()),
        data_dir: Some(config.data_dir.clone()),
        profile: Some(config.profile),
        heartbeat_ms: Some(timing.heartbeat_ms),
        election_min_ms: Some(timing.election_min_ms),
        election_max_ms: Some(timing.election_max_ms),
        write_timeout_ms: Some(timing.write_timeout_ms),
        snapshot_every: Some(config.snapshot_every),
        keep_logs: Some(config.keep_logs),
        wal_segment_bytes: Some(config.storage.wal_segment_bytes),
        raft: RawRaftConfig {
            preferred_leader: Some(
                config
                    .placement
                    .preferred
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |r| r.to_string()),
            ),
            leader_move_cooldown_ms: Some(config.placement.cooldown.as_millis() as u64),
        },
        ..raw
    })
}
