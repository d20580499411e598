//! `baton.v1.Maintenance`: streamed, checksummed, point-in-time backups of a running member.
//!
//! A backup is taken after a linearizable read barrier, so it covers every write acknowledged
//! before the call; the state is then encoded in the snapshot format under the tree's read
//! lock on the blocking pool (applies wait for the encoding, as for a snapshot build; reads do
//! not), and streamed in chunks of [`CHUNK_BYTES`] with a CRC-32 trailer. One backup at a
//! time per member: the encoded state is held in memory while it streams.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::consensus::state_machine::{self, SnapshotSummary};
use crate::error::BatonError;
use crate::proto::v1::{self, backup_chunk::Part, maintenance_server::Maintenance};

/// Largest data chunk of a backup stream.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// The Maintenance service.
pub struct MaintenanceService {
    ctx: Arc<Ctx>,
    /// One permit: held by the backup in progress until its stream ends or is dropped.
    backups: Arc<Semaphore>,
}

impl MaintenanceService {
    /// A service over the member's core.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        MaintenanceService {
            ctx,
            backups: Arc::new(Semaphore::new(1)),
        }
    }
}

/// The stream of a backup.
pub type BackupStream = Pin<Box<dyn Stream<Item = Result<v1::BackupChunk, Status>> + Send>>;

/// The messages of a backup of `body`: info, data chunks, trailer.
fn backup_messages(info: v1::BackupInfo, body: Bytes) -> Vec<v1::BackupChunk> {
    let crc = crc32fast::hash(&body);
    let size = body.len() as u64;
    let mut out = Vec::with_capacity(body.len() / CHUNK_BYTES + 3);
    out.push(v1::BackupChunk {
        part: Some(Part::Info(info)),
    });
    let mut at = 0;
    while at < body.len() {
        let end = (at + CHUNK_BYTES).min(body.len());
        out.push(v1::BackupChunk {
            part: Some(Part::Data(body.slice(at..end))),
        });
        at = end;
    }
    out.push(v1::BackupChunk {
        part: Some(Part::Trailer(v1::BackupTrailer { size, crc32: crc })),
    });
    out
}

fn info(
    ctx: &Ctx,
    s: &SnapshotSummary,
    read_index: u64,
    applied: u64,
    size: u64,
) -> v1::BackupInfo {
    let (index, term) = s
        .last_log_id
        .map_or((0, 0), |l| (l.index, l.leader_id.term));
    v1::BackupInfo {
        header: ctx.header_at(applied),
        index,
        term,
        last_zxid: s.last_zxid,
        last_time_ms: s.last_time_ms,
        znodes: s.znodes,
        sessions: s.sessions,
        size,
        read_index,
        voters: s.membership.membership().voter_ids().collect(),
        snapshot_id: s.snapshot_id.clone(),
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        _req: Request<v1::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let permit = self
            .backups
            .clone()
            .try_acquire_owned()
            .map_err(|_| BatonError::BackupInProgress)?;
        let read_index = self.ctx.reads.linearizable().await?;
        let shared = self.ctx.shared.clone();
        let (summary, body) =
            tokio::task::spawn_blocking(move || state_machine::encode_backup(&shared))
                .await
                .map_err(|e| BatonError::Internal(format!("backup task failed: {e}")))?
                .map_err(|e| BatonError::Internal(format!("encoding the backup: {e}")))?;
        let index = summary.last_log_id.map_or(0, |l| l.index);
        if index < read_index {
            // The applied index never goes back, and the barrier waited for it.
            return Err(BatonError::Internal(format!(
                "the backup covers index {index}, before the read index {read_index}"
            ))
            .into());
        }
        let info = info(
            &self.ctx,
            &summary,
            read_index,
            self.ctx.reads.applied(),
            body.len() as u64,
        );
        tracing::info!(
            index,
            last_zxid = summary.last_zxid,
            bytes = body.len(),
            "streaming a backup"
        );
        let messages = backup_messages(info, Bytes::from(body));
        let stream = futures::stream::iter(messages.into_iter().map(move |m| {
            // The permit goes with the stream: released once it ends or the client leaves.
            let _held = &permit;
            Ok(m)
        }));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_info_bounded_chunks_and_a_trailer_over_every_byte() {
        let body: Vec<u8> = (0..(2 * CHUNK_BYTES + 7)).map(|i| i as u8).collect();
        let msgs = backup_messages(v1::BackupInfo::default(), Bytes::from(body.clone()));
        assert_eq!(msgs.len(), 5);
        assert!(matches!(msgs[0].part, Some(Part::Info(_))));
        let mut got = Vec::new();
        for m in &msgs[1..4] {
            match &m.part {
                Some(Part::Data(d)) => {
                    assert!(d.len() <= CHUNK_BYTES);
                    got.extend_from_slice(d);
                }
                other => panic!("not data: {other:?}"),
            }
        }
        assert_eq!(got, body);
        match &msgs[4].part {
            Some(Part::Trailer(t)) => {
                assert_eq!(t.size, body.len() as u64);
                assert_eq!(t.crc32, crc32fast::hash(&body));
            }
            other => panic!("not a trailer: {other:?}"),
        }
    }
}
