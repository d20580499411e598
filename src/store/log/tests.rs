//! Tests of the Raft log store: appends, truncation, purges, the vote, and upgrades from the
//! sled-kept log of format 1.

use std::path::Path;

use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, EntryPayload, Membership};

use super::*;
use crate::store::DEFAULT_CACHE_CAPACITY;
use crate::tree::{Command, Request};

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Blank,
    }
}

fn normal(term: u64, index: u64) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(
            Command {
                time_ms: index as i64,
                requests: vec![Request::Noop],
            }
            .into(),
        ),
    }
}

fn big(term: u64, index: u64, kib: usize) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(
            Command {
                time_ms: index as i64,
                requests: vec![Request::ExpireTtl(vec![
                    format!("{index:>8}").repeat(kib * 128)
                ])],
            }
            .into(),
        ),
    }
}

/// Small segments, so a few entries cross segment boundaries.
const SEGMENT: u64 = 64 << 10;

fn open(dir: &Path) -> (Store, LogStore) {
    let store = Store::open(dir, DEFAULT_CACHE_CAPACITY).expect("open");
    let ls = LogStore::open(&store, wal_options(SEGMENT)).expect("log");
    (store, ls)
}

/// Appends and waits for the flush callback.
async fn append(ls: &mut LogStore, entries: Vec<Entry>) {
    ls.blocking_append(entries).await.expect("append");
}

async fn ids(ls: &mut LogStore) -> Vec<LogId> {
    ls.try_get_log_entries(..)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id)
        .collect()
}

#[tokio::test]
async fn everything_comes_back_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let membership = Membership::new(vec![[1, 2, 3].into()], ());
    {
        let (_store, mut ls) = open(dir.path());
        append(&mut ls, vec![blank(1, 1), normal(1, 2)]).await;
        append(
            &mut ls,
            vec![
                Entry {
                    log_id: lid(2, 3),
                    payload: EntryPayload::Membership(membership.clone()),
                },
                normal(2, 4),
            ],
        )
        .await;
        ls.save_vote(&Vote::new_committed(2, 1))
            .await
            .expect("vote");
        ls.save_committed(Some(lid(2, 3))).await.expect("committed");
        // save_committed is written with the next write; closing writes it.
        ls.close();
    }
    let (_store, mut ls) = open(dir.path());
    let entries = ls.try_get_log_entries(..).await.expect("read");
    let ids: Vec<LogId> = entries.iter().map(|e| e.log_id).collect();
    assert_eq!(ids, vec![lid(1, 1), lid(1, 2), lid(2, 3), lid(2, 4)]);
    match &entries[2].payload {
        EntryPayload::Membership(m) => assert_eq!(m, &membership),
        p => panic!("unexpected payload {p:?}"),
    }
    match &entries[3].payload {
        EntryPayload::Normal(c) => assert_eq!(c.time_ms, 4),
        p => panic!("unexpected payload {p:?}"),
    }
    assert_eq!(
        ls.read_vote().await.expect("vote"),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(
        ls.read_committed().await.expect("committed"),
        Some(lid(2, 3))
    );
    let st = ls.get_log_state().await.expect("state");
    assert_eq!(st.last_log_id, Some(lid(2, 4)));
    assert_eq!(st.last_purged_log_id, None);
}

#[tokio::test]
async fn purge_deletes_whole_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_store, mut ls) = open(dir.path());
        // ~16 KiB each: four per 64 KiB segment.
        for i in 1..=40 {
            append(&mut ls, vec![big(1, i, 16)]).await;
        }
        let before = ls.segment_count();
        assert!(before >= 10, "{before} segments");
        ls.purge(lid(1, 30)).await.expect("purge");
        // At once: the purged entries are gone from reads and the state.
        assert_eq!(ids(&mut ls).await.first(), Some(&lid(1, 31)));
        let got = ls.try_get_log_entries(25..35).await.expect("read");
        assert_eq!(got.first().map(|e| e.log_id), Some(lid(1, 31)));
        ls.wait_purge_recorded(30).await;
        ls.close();
        assert!(
            ls.segment_count() <= before - 6,
            "{} of {before} segments left",
            ls.segment_count()
        );
    }
    let files = std::fs::read_dir(dir.path().join("wal"))
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .count();
    assert!(files <= 5, "{files} segment files left");
    let (_store, mut ls) = open(dir.path());
    let got = ids(&mut ls).await;
    assert_eq!(got, (31..=40).map(|i| lid(1, i)).collect::<Vec<_>>());
    let st = ls.get_log_state().await.expect("state");
    assert_eq!(st.last_purged_log_id, Some(lid(1, 30)));
    // The entries read back from disk are the ones written.
    let e = ls.try_get_log_entries(35..36).await.expect("read");
    assert_eq!(e, vec![big(1, 35, 16)]);
}

#[tokio::test]
async fn a_purge_not_yet_recorded_is_redone_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_store, mut ls) = open(dir.path());
        append(&mut ls, (1..=10).map(|i| normal(1, i)).collect()).await;
        // What a crash right after purge() returned leaves: no purge record on disk.
        ls.mem().purge(5);
        ls.mem().purged = Some(lid(1, 5));
        ls.close();
    }
    {
        let (_store, mut ls) = open(dir.path());
        // The entries are all still there: openraft sees them and purges again.
        assert_eq!(ids(&mut ls).await.len(), 10);
        ls.purge(lid(1, 5)).await.expect("purge");
        ls.wait_purge_recorded(5).await;
        ls.close();
    }
    let (_store, mut ls) = open(dir.path());
    assert_eq!(ids(&mut ls).await.first(), Some(&lid(1, 6)));
}

#[tokio::test]
async fn purge_of_everything_keeps_the_last_log_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_store, mut ls) = open(dir.path());
        append(&mut ls, (1..=3000).map(|i| blank(1, i)).collect()).await;
        ls.purge(lid(1, 2500)).await.expect("purge");
        assert_eq!(ls.try_get_log_entries(..).await.expect("read").len(), 500);
        ls.purge(lid(1, 3000)).await.expect("purge all");
        // A stale, lower purge is ignored.
        ls.purge(lid(1, 10)).await.expect("purge lower");
        ls.wait_purge_recorded(3000).await;
        ls.close();
    }
    let (_store, mut ls) = open(dir.path());
    assert!(ls.try_get_log_entries(..).await.expect("read").is_empty());
    let st = ls.get_log_state().await.expect("state");
    assert_eq!(st.last_purged_log_id, Some(lid(1, 3000)));
    assert_eq!(st.last_log_id, Some(lid(1, 3000)));
    // Appending continues after the purge point.
    append(&mut ls, vec![normal(2, 3001)]).await;
    assert_eq!(ids(&mut ls).await, vec![lid(2, 3001)]);
}

#[tokio::test]
async fn truncate_and_limited_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_store, mut ls) = open(dir.path());
        append(&mut ls, (1..=10).map(|i| normal(1, i)).collect()).await;
        ls.truncate(lid(1, 8)).await.expect("truncate");
        let st = ls.get_log_state().await.expect("state");
        assert_eq!(st.last_log_id, Some(lid(1, 7)));
        assert_eq!(ls.try_get_log_entries(3..=4).await.expect("read").len(), 2);
        assert!(ls.try_get_log_entries(5..5).await.expect("read").is_empty());
        assert_eq!(
            ls.limited_get_log_entries(1, 8).await.expect("read").len(),
            7
        );
        // Big entries: the byte cap cuts the read short but returns at least one.
        append(&mut ls, (8..=12).map(|i| big(2, i, 400)).collect()).await;
        let got = ls.limited_get_log_entries(8, 13).await.expect("read");
        assert!(!got.is_empty() && got.len() < 5, "got {}", got.len());
        assert_eq!(got[0].log_id, lid(2, 8));
        // Overwrite 11.. with a new term (openraft truncates first; the log copes either way).
        ls.truncate(lid(2, 11)).await.expect("truncate");
        append(&mut ls, vec![normal(3, 11)]).await;
        ls.close();
    }
    let (_store, mut ls) = open(dir.path());
    let mut want: Vec<LogId> = (1..=7).map(|i| lid(1, i)).collect();
    want.extend([lid(2, 8), lid(2, 9), lid(2, 10), lid(3, 11)]);
    assert_eq!(ids(&mut ls).await, want);
}

#[tokio::test]
async fn entries_beyond_the_cache_are_read_back_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut ls) = open(dir.path());
    // Three times what the cache holds, appended a sixteenth of it at a time.
    let kib = CACHE_BYTES / 64 / 1024;
    let entries: Vec<Entry> = (1..=192).map(|i| big(1, i, kib)).collect();
    for chunk in entries.chunks(4) {
        append(&mut ls, chunk.to_vec()).await;
    }
    {
        let m = ls.mem();
        assert!(m.cached_bytes <= CACHE_BYTES, "{} cached", m.cached_bytes);
        assert!(
            m.slots[0].entry.is_none(),
            "the oldest entries were evicted"
        );
    }
    let got = ls.try_get_log_entries(..).await.expect("read");
    assert_eq!(got, entries);
}

#[tokio::test]
async fn a_log_kept_in_sled_by_an_older_version_moves_into_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // What a format-1 data directory holds.
        let store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY).expect("open");
        for i in 1..=6u64 {
            store
                .raft_log()
                .insert(i.to_be_bytes(), stored::encode_entry(&normal(1, i)))
                .expect("insert");
        }
        let meta = store.raft_meta();
        meta.insert(keys::VOTE, stored::encode_vote(&Vote::new_committed(1, 1)))
            .expect("vote");
        meta.insert(keys::COMMITTED, stored::encode_log_id(&lid(1, 5)))
            .expect("committed");
        meta.insert(keys::LAST_PURGED, stored::encode_log_id(&lid(1, 2)))
            .expect("purged");
        let mut v = super::super::FORMAT_MAGIC.to_vec();
        v.extend_from_slice(&1u32.to_be_bytes());
        meta.insert(keys::DATA_VERSION, v).expect("version");
        store.durable_flush().expect("flush");
    }
    for _ in 0..2 {
        let (store, mut ls) = open(dir.path());
        assert_eq!(
            ids(&mut ls).await,
            (3..=6).map(|i| lid(1, i)).collect::<Vec<_>>()
        );
        assert_eq!(
            ls.read_vote().await.expect("vote"),
            Some(Vote::new_committed(1, 1))
        );
        assert_eq!(ls.read_committed().await.expect("c"), Some(lid(1, 5)));
        let st = ls.get_log_state().await.expect("state");
        assert_eq!(st.last_purged_log_id, Some(lid(1, 2)));
        assert!(store.raft_log().is_empty(), "the sled copy is removed");
        assert!(store.raft_meta().get(keys::VOTE).expect("get").is_none());
        let v = store
            .raft_meta()
            .get(keys::DATA_VERSION)
            .expect("get")
            .expect("some");
        assert!(v.ends_with(&super::super::FORMAT_VERSION.to_be_bytes()));
        ls.close();
    }
}

#[tokio::test]
async fn a_second_open_of_the_same_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _ls) = open(dir.path());
    match LogStore::open(&store, wal_options(SEGMENT)) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}
