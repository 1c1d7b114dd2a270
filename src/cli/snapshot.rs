//! `arbiter snapshot save FILE` (a consistent backup of a live cluster, from its leader) and
//! `arbiter snapshot restore FILE --out DIR --member ...` (the data dirs of a new cluster,
//! with a new cluster id, built from a backup). The file format is [`crate::backup`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use arbiter_client::proto::SaveSnapshotRequest;
use clap::{Args, Subcommand};
use serde_json::json;

use super::member::{client, leader, status_error};
use super::output::OutputArgs;
use super::serve::parse_peer;
use super::up::{ClusterArgs, Port};
use crate::backup::{self, Backup, BackupHeader, BACKUP_FORMAT_VERSION};
use crate::config::PeerConfig;
use crate::network::MAX_RAFT_MESSAGE_BYTES;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save a consistent snapshot of the leader's applied state to FILE.
    Save(SaveArgs),
    /// Build the data dirs of a new cluster (new cluster id) from a saved FILE.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    file: PathBuf,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    file: PathBuf,
    /// Where to create `node-<ID>` for each member (the layout `arbiter up --data-dir` uses).
    #[arg(long)]
    out: PathBuf,
    /// A member of the new cluster: ID=REGION@GRPC_ADDR,HTTP_ADDR[,PEER_ADDR] (repeatable; all
    /// voters).
    #[arg(long = "member", value_parser = parse_peer, required = true)]
    members: Vec<PeerConfig>,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match command {
        SnapshotCommand::Save(args) => {
            let options = args.cluster.credentials().client_options()?;
            let current = leader(&args.cluster.endpoints(Port::Grpc), &options).await?;
            let reply = client(&current, &options)?
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .save_snapshot(SaveSnapshotRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let backup = Backup::new(
                BackupHeader {
                    format_version: BACKUP_FORMAT_VERSION,
                    source_cluster_id: reply.cluster_id,
                    last_applied_index: reply.last_applied_index,
                    last_applied_term: reply.last_applied_term,
                    state_digest: reply.state_digest,
                    data_len: reply.data.len() as u64,
                },
                reply.data,
            );
            // Verify what we are about to write exactly as restore will read it.
            Backup::from_bytes(&args.file, &backup.to_bytes())?;
            backup.save(&args.file)?;
            let h = &backup.header;
            args.output.result(
                format!(
                    "saved {}: cluster {}, last applied index {} (term {}), state digest {}, \
                     {} bytes of state",
                    args.file.display(),
                    h.source_cluster_id,
                    h.last_applied_index,
                    h.last_applied_term,
                    h.state_digest,
                    h.data_len
                ),
                json!({
                    "file": args.file,
                    "clusterId": h.source_cluster_id,
                    "lastAppliedIndex": h.last_applied_index,
                    "lastAppliedTerm": h.last_applied_term,
                    "stateDigest": h.state_digest,
                    "stateBytes": h.data_len,
                }),
            );
        }
        SnapshotCommand::Restore(args) => {
            let backup = Backup::load(&args.file)?;
            let members: BTreeMap<_, _> = args.members.iter().map(|p| (p.id, p.member())).collect();
            let cluster_id = backup::restore(&backup, &args.file, &args.out, &members).await?;
            let dirs: BTreeMap<String, PathBuf> = members
                .keys()
                .map(|id| (id.to_string(), backup::member_dir(&args.out, *id)))
                .collect();
            let mut text = format!(
                "restored {} (index {}, state digest {}) as new cluster {cluster_id}",
                args.file.display(),
                backup.header.last_applied_index,
                backup.header.state_digest
            );
            for (id, dir) in &dirs {
                text.push_str(&format!("\n  node {id}: {}", dir.display()));
            }
            text.push_str(
                "\nstart each node on its dir with its address as given (no --bootstrap)",
            );
            args.output.result(
                text,
                json!({
                    "file": args.file,
                    "clusterId": cluster_id.to_string(),
                    "lastAppliedIndex": backup.header.last_applied_index,
                    "stateDigest": backup.header.state_digest,
                    "memberDirs": dirs,
                }),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
