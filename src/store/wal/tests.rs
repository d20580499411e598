//! Write-ahead-log tests: round trips, segment rotation, purge, torn tails and corruption.

use rand::{Rng, SeedableRng};

use super::*;

const SEG: u64 = 64 << 10;

/// A record as read back: kind and payload.
type Seen = (Kind, Vec<u8>);

fn open(dir: &Path) -> Result<(Wal, Vec<Seen>), StoreError> {
    let mut seen = Vec::new();
    let (wal, _) = Wal::open(
        dir,
        WalOptions {
            segment_bytes: SEG,
            ..WalOptions::default()
        },
        |f| {
            seen.push((f.kind, f.payload.to_vec()));
            Ok(())
        },
    )?;
    Ok((wal, seen))
}

/// An entry whose payload is `kib` KiB of letters (no zero byte anywhere).
fn entry(index: u64, kib: usize, seed: u64) -> pb::EntryRaw {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let text: String = (0..kib * 1024)
        .map(|_| rng.gen_range(b'a'..=b'z') as char)
        .collect();
    let command = pb::Command {
        time_ms: 0,
        requests: vec![pb::Request {
            request: Some(pb::request::Request::ExpireTtl(pb::ExpireTtl {
                paths: vec![text],
            })),
            id: None,
        }],
    };
    pb::EntryRaw {
        log_id: Some(pb::LogId {
            leader_id: Some(pb::LeaderId {
                term: 1,
                node_id: 1,
            }),
            index,
        }),
        payload: Some(pb::entry_raw::Payload::Command(
            command.encode_to_vec().into(),
        )),
    }
}

fn rec(index: u64, e: &pb::EntryRaw) -> Rec<'_> {
    Rec::Entry {
        index,
        term: 1,
        node: 1,
        entry: e,
    }
}

/// Writes synchronously.
fn write(wal: &Wal, recs: &[Rec<'_>]) -> Vec<Loc> {
    let (tx, rx) = mpsc::channel();
    let locs = wal
        .write(
            recs,
            true,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        )
        .expect("write");
    rx.recv().expect("done").expect("durable");
    locs
}

fn entries_seen(seen: &[Seen]) -> Vec<u64> {
    seen.iter()
        .filter(|(k, _)| *k == Kind::Entry)
        .map(|(_, p)| u64::from_le_bytes(p[..8].try_into().expect("8 bytes")))
        .collect()
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_name(seq))
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.write_all_at(bytes, offset).expect("patch");
    f.sync_all().expect("sync");
}

#[test]
fn records_come_back_in_order_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let es: Vec<pb::EntryRaw> = (1..=20).map(|i| entry(i, 10, i)).collect();
    let vote = pb::Vote {
        leader_id: Some(pb::LeaderId {
            term: 3,
            node_id: 2,
        }),
        committed: true,
    };
    {
        let (wal, seen) = open(dir.path()).expect("open");
        assert!(seen.is_empty(), "a fresh log has nothing to replay");
        write(&wal, &[Rec::Vote(&vote)]);
        for (i, e) in es.iter().enumerate() {
            write(&wal, &[rec(i as u64 + 1, e)]);
        }
        write(&wal, &[Rec::Truncate(19)]);
        wal.set_committed(es[4].log_id);
        assert!(wal.segment_count() >= 3, "{} segments", wal.segment_count());
        let loc = write(&wal, &[rec(19, &es[0])])[0];
        assert!(wal.is_written(loc));
        assert_eq!(
            &wal.read(loc).expect("read")[24..],
            &es[0].encode_to_vec()[..]
        );
        wal.close();
    }
    let (_wal, seen) = open(dir.path()).expect("reopen");
    let mut want: Vec<u64> = (1..=20).collect();
    want.push(19);
    assert_eq!(entries_seen(&seen), want);
    let kinds: Vec<Kind> = seen
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| *k != Kind::SegmentHeader && *k != Kind::Entry)
        .collect();
    assert_eq!(kinds, vec![Kind::Vote, Kind::Truncate, Kind::Committed]);
    // Every later segment's header carries the state: the vote written before them all.
    let headers: Vec<pb::WalSegmentHeader> = seen
        .iter()
        .filter(|(k, _)| *k == Kind::SegmentHeader)
        .map(|(_, p)| pb::WalSegmentHeader::decode(&p[..]).expect("header"))
        .collect();
    assert!(headers.len() >= 3);
    assert!(headers[1..].iter().all(|h| h.vote == Some(vote)));
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = entry(1, 1, 1);
    let huge = entry(2, 200, 2);
    {
        let (wal, _) = open(dir.path()).expect("open");
        write(&wal, &[rec(1, &small), rec(2, &huge), rec(3, &small)]);
        wal.close();
    }
    let (_wal, seen) = open(dir.path()).expect("reopen");
    assert_eq!(entries_seen(&seen), vec![1, 2, 3]);
}

#[test]
fn purge_deletes_only_whole_older_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let es: Vec<pb::EntryRaw> = (1..=16).map(|i| entry(i, 20, i)).collect();
    let (wal, _) = open(dir.path()).expect("open");
    for (i, e) in es.iter().enumerate() {
        write(&wal, &[rec(i as u64 + 1, e)]);
    }
    let before = wal.segment_count();
    let upto = pb::LogId {
        leader_id: Some(pb::LeaderId {
            term: 1,
            node_id: 1,
        }),
        index: 7,
    };
    write(&wal, &[Rec::Purge(&upto)]);
    let after = wal.segment_count();
    assert!(after < before, "{after} of {before} segments left");
    wal.close();
    drop(wal);
    let (_wal, seen) = open(dir.path()).expect("reopen");
    let got = entries_seen(&seen);
    // Everything after the purge point is still there; the rest went only by whole segments.
    assert!(got.first().is_some_and(|f| *f <= 8), "{got:?}");
    assert_eq!(got.last(), Some(&16));
}

/// Writes entries 1..=n of `kib` KiB each, one write each; returns their locations.
fn fill(dir: &Path, n: u64, kib: usize) -> Vec<Loc> {
    let (wal, _) = open(dir).expect("open");
    let es: Vec<pb::EntryRaw> = (1..=n).map(|i| entry(i, kib, i)).collect();
    let locs = es
        .iter()
        .enumerate()
        .map(|(i, e)| write(&wal, &[rec(i as u64 + 1, e)])[0])
        .collect();
    wal.close();
    locs
}

#[test]
fn a_torn_final_record_is_cut_off_and_writing_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs = fill(dir.path(), 3, 2);
    let last = locs[2];
    // The last record's second sector never reached the disk.
    let sector = (last.offset / 512 + 2) * 512;
    patch(&seg_path(dir.path(), last.seq), sector, &[0u8; 512]);
    {
        let (wal, seen) = open(dir.path()).expect("a torn tail is not corruption");
        assert_eq!(entries_seen(&seen), vec![1, 2]);
        let e = entry(3, 1, 33);
        write(&wal, &[rec(3, &e)]);
        wal.close();
    }
    let (_wal, seen) = open(dir.path()).expect("reopen");
    assert_eq!(entries_seen(&seen), vec![1, 2, 3]);
}

#[test]
fn a_write_cut_short_by_kill_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs = fill(dir.path(), 4, 3);
    // A pwrite interrupted part-way: the page cache holds a prefix of the record, zeros after.
    let last = locs[3];
    let cut = last.offset + HEADER_LEN as u64 + 700;
    patch(
        &seg_path(dir.path(), last.seq),
        cut,
        &vec![0u8; padded(last.len as usize) - HEADER_LEN - 700],
    );
    let (_wal, seen) = open(dir.path()).expect("open");
    assert_eq!(entries_seen(&seen), vec![1, 2, 3]);
    // Cut off for good: the bytes are zero again.
    let data = fs::read(seg_path(dir.path(), last.seq)).expect("read");
    assert!(zero(&data[last.offset as usize..]));
}

#[test]
fn a_flipped_bit_in_an_earlier_record_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs = fill(dir.path(), 3, 2);
    let mid = locs[1];
    let path = seg_path(dir.path(), mid.seq);
    let at = mid.offset + HEADER_LEN as u64 + 100;
    let mut b = [0u8; 1];
    File::open(&path)
        .expect("open")
        .read_exact_at(&mut b, at)
        .expect("read");
    patch(&path, at, &[b[0] ^ 0x04]);
    match open(dir.path()) {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains(&format!("offset {}", mid.offset)), "{msg}");
            assert!(msg.contains("checksum"), "{msg}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a damaged record was accepted"),
    }
}

#[test]
fn a_flipped_bit_in_the_last_record_is_refused_not_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs = fill(dir.path(), 3, 2);
    let last = locs[2];
    let at = last.offset + HEADER_LEN as u64 + 1500;
    let path = seg_path(dir.path(), last.seq);
    let mut b = [0u8; 1];
    File::open(&path)
        .expect("open")
        .read_exact_at(&mut b, at)
        .expect("read");
    patch(&path, at, &[b[0] ^ 0x80]);
    match open(dir.path()) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("flipped bit"), "{msg}"),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a damaged final record was accepted"),
    }
}

#[test]
fn damage_in_a_finished_segment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs = fill(dir.path(), 12, 20);
    let first = locs[0];
    assert!(locs.last().is_some_and(|l| l.seq > first.seq));
    // A torn-looking record in a segment that was finished (synced before the next began).
    let sector = (first.offset / 512 + 3) * 512;
    patch(&seg_path(dir.path(), first.seq), sector, &[0u8; 512]);
    assert!(matches!(open(dir.path()), Err(StoreError::Corrupt(_))));
}

#[test]
fn a_missing_record_followed_by_a_later_synced_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs = fill(dir.path(), 3, 1);
    // The middle record vanished (zeroed) although the next write, synced later, survives.
    let mid = locs[1];
    patch(
        &seg_path(dir.path(), mid.seq),
        mid.offset,
        &vec![0u8; padded(mid.len as usize)],
    );
    match open(dir.path()) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("synced"), "{msg}"),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a hole in the log was accepted"),
    }
}

#[test]
fn a_segment_whose_creation_was_cut_short_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs = fill(dir.path(), 2, 1);
    let seq = locs[1].seq;
    // The next segment was renamed into place but its header never reached the disk.
    fs::write(seg_path(dir.path(), seq + 1), vec![0u8; SEG as usize]).expect("write");
    {
        let (wal, seen) = open(dir.path()).expect("open");
        assert_eq!(entries_seen(&seen), vec![1, 2]);
        assert!(!seg_path(dir.path(), seq + 1).exists());
        let e = entry(3, 1, 3);
        write(&wal, &[rec(3, &e)]);
        wal.close();
    }
    let (_wal, seen) = open(dir.path()).expect("reopen");
    assert_eq!(entries_seen(&seen), vec![1, 2, 3]);
}

#[test]
fn writes_after_close_fail_instead_of_vanishing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path()).expect("open");
    wal.close();
    let e = entry(1, 1, 1);
    assert!(wal.write(&[rec(1, &e)], true, None).is_err());
}
