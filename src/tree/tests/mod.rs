//! Specification tests for the deterministic state machine (`State::apply` and friends).
//!
//! Each test states one rule of the data model (DESIGN.md §2; ZooKeeper 3.9 is the reference).
//! Unless a test says otherwise, the entry at zxid `z` is applied with the proposer time
//! `time_of(z)`, so times and zxids can be predicted from each other.
//!
//! One module per subject; the helpers they share are in `helpers`.

mod children_page;
mod containers;
mod create_modes;
mod errors;
mod events;
mod from_records;
mod helpers;
mod multi;
mod paths;
mod random_histories;
mod sequential;
mod sessions;
mod stat;
mod ttl;
