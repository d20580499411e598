//! `baton.v1.Maintenance`: streamed, checksummed, point-in-time backups of a running member.
//!
//! A backup is taken after a linearizable read barrier, so it covers every write acknowledged
//! before the call; the state is then encoded in the snapshot format, from a point-in-time
//! view taken in constant time (applies and reads go on, as for a snapshot build), into an
//! unnamed file on the blocking pool, and streamed from it in chunks of [`CHUNK_BYTES`] with a
//! CRC-32 trailer: a backup of a large tree is never held in memory. One backup at a time per
//! member.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::consensus::state_machine::SnapshotSummary;
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

/// The messages of a backup: its info, the file's bytes in chunks of at most
/// [`CHUNK_BYTES`], a trailer with its size and CRC-32.
fn backup_stream(
    info: v1::BackupInfo,
    file: tokio::fs::File,
    size: u64,
    crc32: u32,
) -> impl Stream<Item = Result<v1::BackupChunk, Status>> + Send {
    use tokio::io::AsyncReadExt;
    let head = futures::stream::once(async move {
        Ok(v1::BackupChunk {
            part: Some(Part::Info(info)),
        })
    });
    let data = futures::stream::unfold((file, size), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK_BYTES as u64) as usize;
        let mut buf = vec![0u8; n];
        match file.read_exact(&mut buf).await {
            Ok(_) => Some((
                Ok(v1::BackupChunk {
                    part: Some(Part::Data(Bytes::from(buf))),
                }),
                (file, left - n as u64),
            )),
            Err(e) => Some((
                Err(Status::from(BatonError::Internal(format!(
                    "reading the backup file: {e}"
                )))),
                (file, 0),
            )),
        }
    });
    let tail = futures::stream::once(async move {
        Ok(v1::BackupChunk {
            part: Some(Part::Trailer(v1::BackupTrailer { size, crc32 })),
        })
    });
    head.chain(data).chain(tail)
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
        let read_index = self.ctx.member().linearizable().await?;
        let member = self.ctx.member().clone();
        let backup = tokio::task::spawn_blocking(move || member.encode_backup_file())
            .await
            .map_err(|e| BatonError::Internal(format!("backup task failed: {e}")))?
            .map_err(|e| BatonError::Internal(format!("encoding the backup: {e}")))?;
        let summary = &backup.summary;
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
            summary,
            read_index,
            self.ctx.member().applied(),
            backup.size,
        );
        tracing::info!(
            index,
            last_zxid = summary.last_zxid,
            bytes = backup.size,
            "streaming a backup"
        );
        let file = tokio::fs::File::from_std(backup.file);
        let stream = backup_stream(info, file, backup.size, backup.crc32).map(move |m| {
            // The permit goes with the stream: released once it ends or the client leaves.
            let _held = &permit;
            m
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backup_is_info_bounded_chunks_and_a_trailer_over_every_byte() {
        use std::io::Write;
        let body: Vec<u8> = (0..(2 * CHUNK_BYTES + 7)).map(|i| i as u8).collect();
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(&body).expect("write");
        let mut f = tokio::fs::File::from_std(f);
        tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(0))
            .await
            .expect("seek");
        let crc = crc32fast::hash(&body);
        let msgs: Vec<v1::BackupChunk> =
            backup_stream(v1::BackupInfo::default(), f, body.len() as u64, crc)
                .map(|m| m.expect("chunk"))
                .collect()
                .await;
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
