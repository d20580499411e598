//! `baton snapshot save | status | restore`: back a running cluster up to a file, describe a
//! backup file, and restore one into the data directory of a member of a new cluster (see
//! [`crate::backup`]).

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Printer};
use super::CliError;
use crate::backup::{self, BackupFileInfo, RestoreOptions};
use crate::client::{Client, ClientOptions};
use crate::consensus::identity;

/// `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a point-in-time backup from the first endpoint that answers into FILE.
    ///
    /// The backup covers every write acknowledged before the command started. It is written
    /// to FILE.part, its size and checksum are checked against the stream's trailer, then it
    /// is fsynced and renamed to FILE (an existing FILE is replaced only by a verified
    /// backup). Prints the index, last zxid and size.
    Save {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Verify a backup file (checksum, every record) and print what it holds: index, term,
    /// last zxid, znodes, sessions, size, the state hash a restored member reports, the
    /// members it was taken from.
    Status {
        /// The backup file.
        file: PathBuf,
    },
    /// Write the data directory of one member of a NEW cluster from a backup file (offline).
    ///
    /// Run it once per member, with the same FILE and --initial-members and each member's own
    /// --id and --data-dir, then start each member with `batond` and the same --id,
    /// --data-dir and --initial-members. The new cluster has the backup's state, a membership
    /// of the given members, a new cluster id (members of the old cluster are refused), and
    /// zxids that continue after the backup's. Sessions are kept and expire unless their
    /// clients reconnect within their timeout. Refuses a non-empty data directory and a file
    /// that does not verify.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory to create (must be absent or empty).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// This member's id in the new cluster (> 0).
        #[arg(long, value_name = "N")]
        id: u64,
        /// Every member of the new cluster, `id=host:peerport,...` (as batond's flag).
        #[arg(long, value_name = "LIST")]
        initial_members: String,
        /// Mixed into the new cluster id: give each cluster restored from the same backup with
        /// the same member list a token of its own.
        #[arg(long, value_name = "TOKEN", default_value = "")]
        cluster_token: String,
    },
}

/// Runs a `snapshot` subcommand.
///
/// # Errors
/// The failure, phrased as `REASON: detail`.
pub async fn run(
    endpoints: &[String],
    options: ClientOptions,
    cmd: SnapshotCommand,
    out: &mut Printer,
) -> Result<(), CliError> {
    match cmd {
        SnapshotCommand::Save { file } => {
            let client = Client::connect_with(endpoints, options).await?;
            let saved = backup::save(&client, &file).await.map_err(other)?;
            if out.json() {
                out.value(&json!({
                    "file": saved.path.display().to_string(),
                    "member_id": saved.member_id,
                    "index": saved.index,
                    "term": saved.term,
                    "read_index": saved.read_index,
                    "last_zxid": saved.last_zxid,
                    "znodes": saved.znodes,
                    "sessions": saved.sessions,
                    "size": saved.size,
                    "crc32": format!("{:08x}", saved.crc32),
                }))?;
            } else {
                out.line(&format!(
                    "saved {} from member {}: index {} (term {}), last zxid {}, {} znodes, \
                     {} sessions, {} bytes, crc32 {:08x}",
                    saved.path.display(),
                    saved.member_id,
                    saved.index,
                    saved.term,
                    saved.last_zxid,
                    saved.znodes,
                    saved.sessions,
                    saved.size,
                    saved.crc32
                ))?;
            }
            Ok(())
        }
        SnapshotCommand::Status { file } => {
            let f = file.clone();
            let info = tokio::task::spawn_blocking(move || backup::inspect(&f))
                .await
                .map_err(|e| CliError::Other(format!("INTERNAL: {e}")))?
                .map_err(other)?;
            print_info(&file, &info, out)
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            id,
            initial_members,
            cluster_token,
        } => {
            let initial_members = crate::config::parse_members(&initial_members)
                .map_err(|e| CliError::Other(format!("BAD_ARGUMENTS: {e}")))?;
            let restored = backup::restore(RestoreOptions {
                file: file.clone(),
                data_dir: data_dir.clone(),
                id,
                initial_members,
                cluster_token,
            })
            .await
            .map_err(other)?;
            let b = &restored.backup;
            let cluster_id = identity::format_id(restored.cluster_id);
            if out.json() {
                out.value(&json!({
                    "file": file.display().to_string(),
                    "data_dir": data_dir.display().to_string(),
                    "id": id,
                    "initial_members": restored.members,
                    "cluster_id": cluster_id,
                    "index": b.index(),
                    "term": b.term(),
                    "last_zxid": b.summary.last_zxid,
                    "znodes": b.summary.znodes,
                    "sessions": b.summary.sessions,
                    "state_hash": b.state_hash,
                }))?;
            } else {
                out.line(&format!(
                    "restored {} into {} as member {id} of a new cluster {cluster_id}: \
                     index {} (term {}), last zxid {}, {} znodes, {} sessions",
                    file.display(),
                    data_dir.display(),
                    b.index(),
                    b.term(),
                    b.summary.last_zxid,
                    b.summary.znodes,
                    b.summary.sessions
                ))?;
                out.line(&format!(
                    "start it with: batond --id {id} --data-dir {} --initial-members {}",
                    data_dir.display(),
                    restored.members
                ))?;
            }
            Ok(())
        }
    }
}

fn other(e: backup::BackupError) -> CliError {
    match e {
        backup::BackupError::Client(c) => CliError::Client(c),
        e => CliError::Other(e.to_string()),
    }
}

fn print_info(
    file: &std::path::Path,
    info: &BackupFileInfo,
    out: &mut Printer,
) -> Result<(), CliError> {
    let s = &info.summary;
    if out.json() {
        out.value(&json!({
            "file": file.display().to_string(),
            "index": info.index(),
            "term": info.term(),
            "last_zxid": s.last_zxid,
            "last_time": output::format_time_ms(s.last_time_ms),
            "znodes": s.znodes,
            "sessions": s.sessions,
            "size": info.size,
            "crc32": format!("{:08x}", info.crc32),
            "checksum_ok": true,
            "state_hash": info.state_hash,
            "voters": info.voters(),
            "snapshot_id": s.snapshot_id,
        }))?;
    } else {
        let voters: Vec<String> = info.voters().iter().map(u64::to_string).collect();
        for line in [
            format!("file:        {}", file.display()),
            format!("index:       {} (term {})", info.index(), info.term()),
            format!("last zxid:   {}", s.last_zxid),
            format!("last write:  {}", output::format_time_ms(s.last_time_ms)),
            format!("znodes:      {}", s.znodes),
            format!("sessions:    {}", s.sessions),
            format!("size:        {} bytes", info.size),
            format!("checksum:    crc32 {:08x} ok", info.crc32),
            format!("state hash:  {}", info.state_hash),
            format!("voters:      {}", voters.join(",")),
        ] {
            out.line(&line)?;
        }
    }
    Ok(())
}
