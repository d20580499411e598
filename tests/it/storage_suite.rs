//! openraft's own storage conformance suite (`openraft::testing::Suite`), run against the
//! real `LogStore` (write-ahead log) and `StateMachineStore`, each test on a fresh data directory.

use std::sync::Arc;

use baton::consensus::state_machine::StateMachineStore;
use baton::consensus::TypeConfig;
use baton::store::log::{wal_options, LogStore};
use baton::store::{Store, StoreError, DEFAULT_CACHE_CAPACITY};
use baton::watch::WatchHub;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use tempfile::TempDir;

/// Builds a store on a new temporary directory; the directory is the guard, removed when
/// the test drops it.
struct SledBuilder;

fn open_err(e: StoreError) -> StorageError<u64> {
    e.into_storage(ErrorSubject::Store, ErrorVerb::Read)
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir =
            tempfile::tempdir().map_err(|e| open_err(StoreError::Task(format!("tempdir: {e}"))))?;
        let store = Store::open(dir.path(), DEFAULT_CACHE_CAPACITY).map_err(open_err)?;
        let log = LogStore::open(&store, wal_options(1 << 20)).map_err(open_err)?;
        let hub = Arc::new(WatchHub::new(1000, 64, 0));
        let (sm, _shared) = StateMachineStore::open(&store, hub).map_err(open_err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
