//! `arbiter auth token`: issue a bearer token.
//!
//! The token is printed once and never stored: the tokens file gets only its SHA-256 digest.
//! With `--tokens-file` the entry is appended there (nodes pick it up on SIGHUP); without it,
//! the entry is printed for the operator to add to the tokens file or `[[auth.tokens]]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::OutputArgs;

use crate::auth::directory::TokensFile;
use crate::auth::issue::{issue, TokenGrant};
use crate::auth::{token, Role};

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Issue a bearer token for an identity and role.
    Token(TokenArgs),
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The identity name (audit records show it; a proxy's only lease holder name).
    #[arg(long)]
    identity: String,
    /// operator, controller, proxy, probe, region or reader.
    #[arg(long)]
    role: Role,
    /// The region a proxy or region identity is bound to.
    #[arg(long)]
    region: Option<String>,
    /// The vantage point a probe identity reports as.
    #[arg(long)]
    vantage: Option<String>,
    /// Append the entry to this tokens file (created if absent).
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

/// The token alone on stdout (for `$(...)`), or with whom it names under `--output json`.
fn print_token(output: &OutputArgs, grant: &TokenGrant, token: &str) {
    output.result(
        token,
        serde_json::json!({
            "identity": grant.identity,
            "role": grant.role.to_string(),
            "region": grant.region,
            "vantage": grant.vantage,
            "token": token,
        }),
    );
}

pub async fn run(command: AuthCommand) -> anyhow::Result<ExitCode> {
    let AuthCommand::Token(args) = command;
    let grant = TokenGrant {
        identity: args.identity,
        role: args.role,
        region: args.region,
        vantage: args.vantage,
    };
    // Checked as a node would load it, so a token is never issued for an entry nodes refuse.
    let probe_entry = grant.entry("check");
    crate::auth::Directory::load(&crate::auth::AuthConfig {
        tokens: vec![probe_entry],
        ..Default::default()
    })?;
    match &args.tokens_file {
        Some(path) => {
            let token = issue(path, &grant)?;
            print_token(&args.output, &grant, &token);
            eprintln!(
                "added {} ({}) to {}; send SIGHUP to the nodes to load it. The token is shown \
                 only now.",
                grant.identity,
                grant.role,
                path.display()
            );
        }
        None => {
            let token = token::generate();
            print_token(&args.output, &grant, &token);
            let entry = TokensFile {
                tokens: vec![grant.entry(&token)],
                ..TokensFile::default()
            };
            eprintln!(
                "add this entry to the tokens file (the token is shown only now):\n\n{}",
                toml::to_string(&entry)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
