//! Self-tests of the checker: hand-made histories, randomised histories from real sequential
//! executions (and mutations of them), a brute-force cross-check, and a performance run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

type Op = RegisterOp<u64>;
type Out = RegisterOut<u64>;
type Hist = History<Op, Out>;
type Oper = Operation<Op, Out>;

const KEY: &str = "/r";

fn done(p: u64, op: Op, out: Out, call: u64, ret: u64) -> Oper {
    Operation::completed(p, KEY, op, out, call, ret)
}

fn info(p: u64, op: Op, call: u64) -> Oper {
    Operation::indeterminate(p, KEY, op, call)
}

fn read(v: Option<(u64, i32)>) -> Out {
    RegisterOut::Read(v)
}

fn cas(expected_version: i32, value: u64) -> Op {
    RegisterOp::Cas {
        expected_version,
        value,
    }
}

fn hist(ops: Vec<Oper>) -> Hist {
    History::from_ops(ops).expect("well-formed test history")
}

fn opts() -> CheckOptions {
    CheckOptions::with_time_limit(Duration::from_secs(60))
}

fn verdict_from(model: &Register<u64>, ops: Vec<Oper>) -> Verdict {
    check(model, &hist(ops), &opts())
}

/// Checks with every key starting at `(0, 0)`.
fn verdict0(ops: Vec<Oper>) -> Verdict {
    verdict_from(&Register::with_initial(0, 0), ops)
}

fn assert_ok(v: &Verdict) {
    assert!(v.is_ok(), "expected Ok, got {v}");
}

fn assert_illegal(v: &Verdict) {
    assert!(v.is_illegal(), "expected Illegal, got {v}");
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

#[test]
fn register_model_follows_zookeeper_versions() {
    let m = Register::<u64>::absent();
    let s0 = m.init();
    assert_eq!(s0, None);
    assert_eq!(m.step(&s0, &RegisterOp::Read, &read(None)), Some(None));
    assert_eq!(
        m.step(&s0, &RegisterOp::Write(1), &RegisterOut::NoNode),
        Some(None)
    );
    assert_eq!(
        m.step(&s0, &RegisterOp::Write(1), &RegisterOut::Written(1)),
        None
    );
    assert_eq!(m.step(&s0, &cas(0, 1), &RegisterOut::NoNode), Some(None));
    assert_eq!(
        m.step(&s0, &RegisterOp::Delete, &RegisterOut::NoNode),
        Some(None)
    );
    let s1 = m.step(&s0, &RegisterOp::Create(5), &RegisterOut::Created);
    assert_eq!(s1, Some(Some((5, 0))));
    let s1 = s1.flatten();
    assert_eq!(
        m.step(&s1, &RegisterOp::Create(6), &RegisterOut::NodeExists),
        Some(s1)
    );
    assert_eq!(
        m.step(&s1, &RegisterOp::Create(6), &RegisterOut::Created),
        None
    );
    let s2 = m.step(&s1, &RegisterOp::Write(7), &RegisterOut::Written(1));
    assert_eq!(s2, Some(Some((7, 1))));
    let s2 = s2.flatten();
    assert_eq!(m.step(&s2, &cas(0, 8), &RegisterOut::BadVersion), Some(s2));
    assert_eq!(m.step(&s2, &cas(0, 8), &RegisterOut::Written(2)), None);
    assert_eq!(
        m.step(&s2, &cas(1, 8), &RegisterOut::Written(2)),
        Some(Some((8, 2)))
    );
    assert_eq!(m.step(&s2, &cas(1, 8), &RegisterOut::BadVersion), None);
    assert_eq!(
        m.step(&s2, &cas(-1, 8), &RegisterOut::Written(2)),
        Some(Some((8, 2)))
    );
    assert_eq!(m.step(&s2, &RegisterOp::Read, &read(Some((7, 2)))), None);
    assert_eq!(m.step(&s2, &RegisterOp::Read, &RegisterOut::Created), None);
    assert_eq!(
        m.step(&s2, &RegisterOp::Delete, &RegisterOut::Deleted),
        Some(None)
    );
    // Indeterminate operations take effect as the model dictates.
    assert_eq!(m.step_indeterminate(&s2, &cas(0, 9)), Some(s2));
    assert_eq!(m.step_indeterminate(&s2, &cas(1, 9)), Some(Some((9, 2))));
    assert!(m.is_read_only(&RegisterOp::Read));
    assert!(!m.is_read_only(&RegisterOp::Delete));
    // Versions wrap like the tree's.
    let max = Some((1, i32::MAX));
    assert_eq!(
        m.step(&max, &RegisterOp::Write(2), &RegisterOut::Written(i32::MIN)),
        Some(Some((2, i32::MIN)))
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-made histories
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_history_is_ok() {
    assert_ok(&verdict0(vec![]));
}

#[test]
fn sequential_history_is_ok() {
    use RegisterOp::{Create, Delete, Read, Write};
    use RegisterOut::{BadVersion, Created, Deleted, NoNode, NodeExists, Written};
    let ops = vec![
        done(1, Create(1), Created, 0, 1),
        done(1, Read, read(Some((1, 0))), 2, 3),
        done(1, Write(2), Written(1), 4, 5),
        done(1, cas(1, 3), Written(2), 6, 7),
        done(1, cas(1, 4), BadVersion, 8, 9),
        done(1, Read, read(Some((3, 2))), 10, 11),
        done(1, Delete, Deleted, 12, 13),
        done(1, Read, read(None), 14, 15),
        done(1, Delete, NoNode, 16, 17),
        done(1, Write(5), NoNode, 18, 19),
        done(1, Create(6), Created, 20, 21),
        done(1, Create(7), NodeExists, 22, 23),
        done(1, Read, read(Some((6, 0))), 24, 25),
    ];
    assert_ok(&verdict_from(&Register::absent(), ops));
}

#[test]
fn sequential_history_with_a_wrong_version_is_illegal() {
    use RegisterOp::{Create, Write};
    use RegisterOut::{Created, Written};
    let ops = vec![
        done(1, Create(1), Created, 0, 1),
        done(1, Write(2), Written(2), 4, 5),
    ];
    assert_illegal(&verdict_from(&Register::absent(), ops));
}

#[test]
fn concurrent_write_and_reads_are_ok() {
    let ops = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        done(2, RegisterOp::Read, read(Some((0, 0))), 2, 5),
        done(3, RegisterOp::Read, read(Some((1, 1))), 3, 8),
        done(2, RegisterOp::Read, read(Some((1, 1))), 6, 12),
    ];
    assert_ok(&verdict0(ops));
}

#[test]
fn new_then_old_value_is_illegal() {
    // Read A sees the new value and returns before read B starts; B sees the old one.
    let ops = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 20),
        done(2, RegisterOp::Read, read(Some((1, 1))), 2, 5),
        done(3, RegisterOp::Read, read(Some((0, 0))), 6, 9),
    ];
    assert_illegal(&verdict0(ops));
}

#[test]
fn stale_read_after_completed_write_is_illegal() {
    let ops = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        done(2, RegisterOp::Read, read(Some((0, 0))), 11, 20),
    ];
    let v = verdict0(ops);
    assert_illegal(&v);
    let Verdict::Illegal { key, explanation } = v else {
        unreachable!()
    };
    assert_eq!(key, KEY);
    assert!(
        explanation.contains("longest linearizable prefix: 1 operations"),
        "{explanation}"
    );
    assert!(
        explanation.contains("state after the prefix: Some((1, 1))"),
        "{explanation}"
    );
    assert!(
        explanation.contains("#1 p2 Read -> Read(Some((0, 0)))"),
        "{explanation}"
    );
    assert!(explanation.contains("output impossible"), "{explanation}");
}

#[test]
fn equal_timestamps_are_concurrent() {
    // A return at t and a call at t overlap, so the read may be ordered before the write.
    let touching = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        done(2, RegisterOp::Read, read(Some((0, 0))), 10, 20),
    ];
    assert_ok(&verdict0(touching));
    let after = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        done(2, RegisterOp::Read, read(Some((0, 0))), 11, 20),
    ];
    assert_illegal(&verdict0(after));
    // Zero-length operations.
    let instant = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 5, 5),
        done(2, RegisterOp::Read, read(Some((0, 0))), 5, 5),
    ];
    assert_ok(&verdict0(instant));
}

#[test]
fn lost_write_is_illegal() {
    // Write 2 got version 2, so it was applied after write 1; a later read still sees 1.
    let ops = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        done(2, RegisterOp::Write(2), RegisterOut::Written(2), 0, 10),
        done(3, RegisterOp::Read, read(Some((1, 1))), 20, 30),
    ];
    assert_illegal(&verdict0(ops));
    // Two blind writes both acknowledged with the same version: one of them was lost.
    let ops = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        done(2, RegisterOp::Write(2), RegisterOut::Written(1), 0, 10),
    ];
    assert_illegal(&verdict0(ops));
}

#[test]
fn two_successful_cas_on_the_same_version_are_illegal() {
    let ops = vec![
        done(1, cas(0, 1), RegisterOut::Written(1), 0, 10),
        done(2, cas(0, 2), RegisterOut::Written(1), 0, 10),
    ];
    assert_illegal(&verdict0(ops));
    // One success and one BadVersion is fine, in either order.
    let ops = vec![
        done(1, cas(0, 1), RegisterOut::Written(1), 0, 10),
        done(2, cas(0, 2), RegisterOut::BadVersion, 0, 10),
        done(3, RegisterOp::Read, read(Some((1, 1))), 11, 12),
    ];
    assert_ok(&verdict0(ops));
}

#[test]
fn indeterminate_write_visible_later_is_ok() {
    let ops = vec![
        info(1, RegisterOp::Write(1), 0),
        done(2, RegisterOp::Read, read(Some((0, 0))), 5, 10),
        done(2, RegisterOp::Read, read(Some((1, 1))), 20, 30),
        done(2, RegisterOp::Read, read(Some((1, 1))), 40, 50),
    ];
    assert_ok(&verdict0(ops));
}

#[test]
fn indeterminate_write_never_visible_is_ok() {
    let ops = vec![
        info(1, RegisterOp::Write(1), 0),
        done(2, RegisterOp::Read, read(Some((0, 0))), 20, 30),
        done(2, RegisterOp::Read, read(Some((0, 0))), 40, 50),
    ];
    assert_ok(&verdict0(ops));
}

#[test]
fn indeterminate_write_cannot_be_undone() {
    let ops = vec![
        info(1, RegisterOp::Write(1), 0),
        done(2, RegisterOp::Read, read(Some((1, 1))), 20, 30),
        done(2, RegisterOp::Read, read(Some((0, 0))), 40, 50),
    ];
    assert_illegal(&verdict0(ops));
}

#[test]
fn indeterminate_write_cannot_take_effect_before_its_call() {
    let ops = vec![
        done(2, RegisterOp::Read, read(Some((1, 1))), 0, 10),
        info(1, RegisterOp::Write(1), 20),
    ];
    assert_illegal(&verdict0(ops));
}

#[test]
fn indeterminate_cas_may_or_may_not_have_happened() {
    // Not applied: another CAS on version 0 succeeds.
    let ops = vec![
        info(1, cas(0, 1), 0),
        done(2, cas(0, 2), RegisterOut::Written(1), 10, 20),
    ];
    assert_ok(&verdict0(ops));
    // Applied: seen by a read.
    let ops = vec![
        info(1, cas(0, 1), 0),
        done(2, RegisterOp::Read, read(Some((1, 1))), 10, 20),
    ];
    assert_ok(&verdict0(ops));
    // Applied and seen, then another CAS on version 0 "succeeds": illegal.
    let ops = vec![
        info(1, cas(0, 1), 0),
        done(2, RegisterOp::Read, read(Some((1, 1))), 10, 20),
        done(3, cas(0, 2), RegisterOut::Written(1), 30, 40),
    ];
    assert_illegal(&verdict0(ops));
}

#[test]
fn reading_a_value_never_written_is_illegal() {
    let ops = vec![
        done(1, RegisterOp::Create(1), RegisterOut::Created, 0, 10),
        done(2, RegisterOp::Read, read(Some((7, 0))), 5, 15),
    ];
    assert_illegal(&verdict_from(&Register::absent(), ops));
    let ops = vec![done(2, RegisterOp::Read, read(Some((0, 0))), 5, 15)];
    assert_illegal(&verdict_from(&Register::absent(), ops));
}

#[test]
fn create_and_delete_races() {
    use RegisterOp::{Create, Delete, Read, Write};
    use RegisterOut::{Created, Deleted, NoNode};
    // Two creates both succeeding without a delete in between: illegal.
    let ops = vec![
        done(1, Create(1), Created, 0, 10),
        done(2, Create(2), Created, 0, 10),
    ];
    assert_illegal(&verdict_from(&Register::absent(), ops));
    // ... but fine with a concurrent delete between them.
    let ops = vec![
        done(1, Create(1), Created, 0, 10),
        done(2, Create(2), Created, 0, 10),
        done(3, Delete, Deleted, 0, 10),
        done(3, Read, read(Some((2, 0))), 11, 12),
    ];
    assert_ok(&verdict_from(&Register::absent(), ops));
    // An indeterminate delete explains a NoNode.
    let ops = vec![
        done(1, Create(1), Created, 0, 10),
        info(2, Delete, 11),
        done(3, Write(3), NoNode, 20, 30),
        done(3, Create(4), Created, 40, 50),
        done(3, Read, read(Some((4, 0))), 60, 70),
    ];
    assert_ok(&verdict_from(&Register::absent(), ops));
}

#[test]
fn indeterminate_reads_are_dropped() {
    let ops = vec![
        info(1, RegisterOp::Read, 0),
        done(2, RegisterOp::Write(1), RegisterOut::Written(1), 5, 10),
    ];
    let report = check_report(&Register::with_initial(0, 0), &hist(ops), &opts());
    assert_ok(&report.verdict);
    assert_eq!(report.keys.len(), 1);
    assert_eq!(report.keys[0].ops, 1);
    assert_eq!(report.keys[0].indeterminate, 0);
}

#[test]
fn only_indeterminate_operations_is_ok() {
    let ops = vec![info(1, RegisterOp::Write(1), 0), info(2, cas(3, 2), 0)];
    assert_ok(&verdict0(ops));
}

#[test]
fn keys_are_checked_independently() {
    let mut ops = vec![
        // "/a": fine.
        Operation::completed(
            1,
            "/a",
            RegisterOp::Write(1),
            RegisterOut::Written(1),
            0,
            10,
        ),
        Operation::completed(2, "/a", RegisterOp::Read, read(Some((1, 1))), 11, 20),
        // "/b": stale read.
        Operation::completed(
            1,
            "/b",
            RegisterOp::Write(2),
            RegisterOut::Written(1),
            0,
            10,
        ),
        Operation::completed(2, "/b", RegisterOp::Read, read(Some((0, 0))), 11, 20),
    ];
    // "/c": fine, and would be illegal if keys were mixed up (it reads version 1 of "/c").
    ops.push(Operation::completed(
        3,
        "/c",
        RegisterOp::Read,
        read(Some((0, 0))),
        30,
        40,
    ));
    for threads in [1, 2, 4] {
        let options = CheckOptions { threads, ..opts() };
        let report = check_report(&Register::with_initial(0, 0), &hist(ops.clone()), &options);
        match &report.verdict {
            Verdict::Illegal { key, .. } => assert_eq!(key, "/b"),
            other => panic!("expected /b illegal, got {other}"),
        }
        let keys: Vec<&str> = report.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["/a", "/b", "/c"]);
        assert!(report.keys[1].verdict.is_illegal());
    }
    let fine: Vec<Oper> = ops.into_iter().filter(|op| op.key != "/b").collect();
    assert_ok(&verdict0(fine));
}

#[test]
fn out_of_time_is_unknown_and_not_ok() {
    let ops = vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        done(2, RegisterOp::Read, read(Some((1, 1))), 11, 20),
    ];
    let options = CheckOptions {
        time_limit: Duration::ZERO,
        threads: 1,
    };
    let v = check(&Register::with_initial(0, 0), &hist(ops), &options);
    assert!(v.is_unknown(), "{v}");
    assert!(!v.is_ok());
    assert!(v.to_string().contains("counts as a failure"), "{v}");
    let Verdict::Unknown { reason, .. } = v else {
        unreachable!()
    };
    assert!(reason.starts_with("timed out after"), "{reason}");
}

#[test]
fn malformed_histories_are_rejected() {
    let backwards = done(1, RegisterOp::Read, read(None), 10, 5);
    assert_eq!(
        History::from_ops(vec![backwards]),
        Err(HistoryError::ReturnBeforeCall {
            index: 0,
            call_ns: 10,
            return_ns: 5
        })
    );
    let mut h = Hist::new();
    let mut no_output = done(1, RegisterOp::Read, read(None), 1, 2);
    no_output.output = None;
    assert_eq!(
        h.push(no_output),
        Err(HistoryError::ReturnWithoutOutput { index: 0 })
    );
    let mut no_return = done(1, RegisterOp::Read, read(None), 1, 2);
    no_return.return_ns = None;
    assert_eq!(
        h.push(no_return),
        Err(HistoryError::OutputWithoutReturn { index: 0 })
    );
    assert!(h.is_empty());
}

#[test]
fn history_json_round_trip_validates() {
    let h = hist(vec![
        done(1, RegisterOp::Write(1), RegisterOut::Written(1), 0, 10),
        info(2, cas(1, 2), 5),
    ]);
    let json = serde_json::to_string(&h).expect("serialize");
    let back: Hist = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, h);
    let bad = json.replace("\"return_ns\":10", "\"return_ns\":null");
    assert!(serde_json::from_str::<Hist>(&bad).is_err());
}

// ---------------------------------------------------------------------------------------------
// Recorder
// ---------------------------------------------------------------------------------------------

#[test]
fn recorder_records_ok_drops_fail_and_keeps_info() {
    let h: RegisterRecorder<u64> = Recorder::new();
    let p = h.new_process();
    let a = h.invoke(p, KEY, RegisterOp::Create(1));
    h.ok(a, RegisterOut::Created);
    let b = h.invoke(p, KEY, RegisterOp::Write(2));
    h.fail(b);
    let c = h.invoke(p, KEY, RegisterOp::Write(3));
    h.info(c);
    let q = h.new_process();
    assert_ne!(p, q);
    let d = h.invoke(q, KEY, RegisterOp::Write(4));
    let _never_completed = h.invoke(q, KEY, RegisterOp::Delete);
    let history = h.finish();
    // Completing after `finish` has no effect.
    h.ok(d, RegisterOut::Written(1));
    let ops = history.ops();
    assert_eq!(ops.len(), 4);
    assert_eq!(ops[0].output, Some(RegisterOut::Created));
    assert!(ops[0].return_ns >= Some(ops[0].call_ns));
    assert_eq!(ops[1].input, RegisterOp::Write(3));
    assert!(ops[1].is_indeterminate());
    assert!(ops[2].is_indeterminate() && ops[3].is_indeterminate());
    assert_eq!(history.indeterminate_count(), 3);
    assert!(ops.windows(2).all(|w| w[0].call_ns <= w[1].call_ns));
    // The recorder starts afresh.
    assert!(h.finish().is_empty());
}

/// Many tokio tasks drive a linearizable in-memory register (a mutex) and record what they
/// see, with timeouts turned into indeterminate operations: the history must check Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_from_many_tasks_on_a_linearizable_object_is_ok() {
    let h: RegisterRecorder<u64> = Recorder::new();
    let keys = ["/x", "/y"];
    type Object = Mutex<Option<(u64, i32)>>;
    let objects: Arc<[Object; 2]> = Arc::new([Mutex::new(Some((0, 0))), Mutex::new(Some((0, 0)))]);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let h = h.clone();
        let objects = Arc::clone(&objects);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(t);
            let mut process = h.new_process();
            for i in 0..60u64 {
                let k = rng.gen_range(0..2);
                let value = t * 1_000 + i;
                let op = match rng.gen_range(0..3) {
                    0 => RegisterOp::Read,
                    1 => RegisterOp::Write(value),
                    _ => cas(rng.gen_range(0..4), value),
                };
                let id = h.invoke(process, keys[k], op.clone());
                tokio::task::yield_now().await;
                let out = {
                    let mut slot = objects[k].lock().unwrap_or_else(|p| p.into_inner());
                    let (next, out) = Register::apply(&slot, &op);
                    *slot = next;
                    out
                };
                tokio::task::yield_now().await;
                if i % 23 == 22 {
                    // The response was "lost": the effect happened but the client timed out.
                    h.info(id);
                    process = h.new_process();
                } else {
                    h.ok(id, out);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let history = h.finish();
    assert_eq!(history.len(), 8 * 60);
    let report = check_report(&Register::with_initial(0, 0), &history, &opts());
    assert_ok(&report.verdict);
    assert_eq!(report.keys.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Random histories from real sequential executions
// ---------------------------------------------------------------------------------------------

/// Parameters of a generated history.
#[derive(Clone, Copy)]
struct Gen {
    clients: usize,
    ops: usize,
    keys: usize,
    /// Probability that an operation is indeterminate.
    p_info: f64,
    /// Longest operation (time units); small values produce many equal timestamps.
    max_duration: u64,
    /// Longest pause between a client's operations.
    max_gap: u64,
}

/// The reference sequential register, written independently of [`Register::apply`].
fn sequential(state: &mut Option<(u64, i32)>, op: &Op) -> Out {
    match op {
        RegisterOp::Read => RegisterOut::Read(*state),
        RegisterOp::Write(v) => match state {
            None => RegisterOut::NoNode,
            Some((value, version)) => {
                *value = *v;
                *version += 1;
                RegisterOut::Written(*version)
            }
        },
        RegisterOp::Cas {
            expected_version,
            value: v,
        } => match state {
            None => RegisterOut::NoNode,
            Some((_, version)) if *expected_version != -1 && *expected_version != *version => {
                RegisterOut::BadVersion
            }
            Some((value, version)) => {
                *value = *v;
                *version += 1;
                RegisterOut::Written(*version)
            }
        },
        RegisterOp::Create(v) => {
            if state.is_some() {
                RegisterOut::NodeExists
            } else {
                *state = Some((*v, 0));
                RegisterOut::Created
            }
        }
        RegisterOp::Delete => {
            if state.take().is_some() {
                RegisterOut::Deleted
            } else {
                RegisterOut::NoNode
            }
        }
    }
}

fn key_name(k: usize) -> String {
    format!("/k{k}")
}

/// Generates a linearizable history: clients take turns issuing operations with random
/// intervals, each operation takes effect at a random point of its interval (indeterminate
/// ones at a random later point, or never), inputs are chosen and outputs computed by running
/// the operations sequentially in the order of those points. Every key starts at `(0, 0)`;
/// written values are unique.
fn generate(rng: &mut StdRng, g: Gen) -> Vec<Oper> {
    struct Planned {
        process: u64,
        key: usize,
        call: u64,
        ret: Option<u64>,
        /// When it takes effect; `None` = never (indeterminate only).
        point: Option<u64>,
    }
    let mut free_at: Vec<u64> = (0..g.clients)
        .map(|_| rng.gen_range(0..=g.max_gap))
        .collect();
    let mut process: Vec<u64> = (0..g.clients as u64).collect();
    let mut next_process = g.clients as u64;
    let mut planned = Vec::with_capacity(g.ops);
    for _ in 0..g.ops {
        let c = (0..g.clients).min_by_key(|&c| (free_at[c], c)).unwrap_or(0);
        let call = free_at[c] + rng.gen_range(0..=g.max_gap);
        let ret = call + rng.gen_range(0..=g.max_duration);
        let key = rng.gen_range(0..g.keys);
        let (ret_recorded, point) = if rng.gen_bool(g.p_info) {
            let point = rng
                .gen_bool(0.5)
                .then(|| call + rng.gen_range(0..=3 * g.max_duration + 1));
            (None, point)
        } else {
            (Some(ret), Some(rng.gen_range(call..=ret)))
        };
        planned.push(Planned {
            process: process[c],
            key,
            call,
            ret: ret_recorded,
            point,
        });
        free_at[c] = ret;
        if ret_recorded.is_none() {
            process[c] = next_process;
            next_process += 1;
        }
    }

    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].point.is_none(), planned[i].point, i));
    let mut states: Vec<Option<(u64, i32)>> = vec![Some((0, 0)); g.keys];
    let mut ops: Vec<Option<Oper>> = (0..planned.len()).map(|_| None).collect();
    // Unique written values: 1, 2, … in order of effect.
    for (value, i) in (1u64..).zip(order) {
        let p = &planned[i];
        let state = &mut states[p.key];
        let current = state.map_or(0, |(_, v)| v);
        let input = match rng.gen_range(0..100) {
            0..=34 => RegisterOp::Read,
            35..=54 => RegisterOp::Write(value),
            55..=79 => {
                let expected_version = match rng.gen_range(0..10) {
                    0..=5 => current,
                    6 => -1,
                    _ => current + rng.gen_range(-2..=2),
                };
                cas(expected_version, value)
            }
            80..=89 => RegisterOp::Create(value),
            _ => RegisterOp::Delete,
        };
        let output = p.point.map(|_| sequential(state, &input));
        ops[i] = Some(Operation {
            process: p.process,
            key: key_name(p.key),
            input,
            output: p.ret.and(output),
            call_ns: p.call,
            return_ns: p.ret,
        });
    }
    ops.into_iter().flatten().collect()
}

fn small_gen(rng: &mut StdRng) -> Gen {
    Gen {
        clients: rng.gen_range(1..=5),
        ops: rng.gen_range(1..=40),
        keys: rng.gen_range(1..=3),
        p_info: if rng.gen_bool(0.5) { 0.1 } else { 0.0 },
        max_duration: rng.gen_range(0..=30),
        max_gap: rng.gen_range(0..=10),
    }
}

const RANDOM_OK_SEEDS: u64 = 600;

#[test]
fn random_linearizable_histories_are_ok() {
    let model = Register::with_initial(0, 0);
    for seed in 0..RANDOM_OK_SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let g = small_gen(&mut rng);
        let ops = generate(&mut rng, g);
        let v = check(&model, &hist(ops), &opts());
        assert!(v.is_ok(), "seed {seed}: {v}");
    }
}

/// A read that returns a value overwritten before the read was called: `p` set the value,
/// `w` (a completed, state-changing operation) overwrote it, `p` returned before `w` was
/// called and `w` returned before the read `r` was called. Values are unique, so no
/// linearization can let `r` see `p`'s value. Returns `(r, stale state)`.
fn stale_read_candidates(ops: &[Oper]) -> Vec<(usize, Option<(u64, i32)>)> {
    let sets = |op: &Oper| -> Option<(u64, i32)> {
        match (&op.input, op.output.as_ref()?) {
            (RegisterOp::Write(v) | RegisterOp::Cas { value: v, .. }, RegisterOut::Written(n)) => {
                Some((*v, *n))
            }
            (RegisterOp::Create(v), RegisterOut::Created) => Some((*v, 0)),
            _ => None,
        }
    };
    let changes = |op: &Oper| {
        matches!(
            op.output,
            Some(RegisterOut::Written(_) | RegisterOut::Created | RegisterOut::Deleted)
        )
    };
    // For each setter `p`: the earliest return of a completed state change called after `p`
    // returned (a read called after that time cannot see `p`'s value).
    let setters: Vec<(&str, (u64, i32), u64)> = ops
        .iter()
        .filter_map(|p| {
            let p_ret = p.return_ns?;
            let overwritten_by = ops
                .iter()
                .filter(|w| w.key == p.key && changes(w) && p_ret < w.call_ns)
                .filter_map(|w| w.return_ns)
                .min()?;
            Some((p.key.as_str(), sets(p)?, overwritten_by))
        })
        .collect();
    let mut candidates = Vec::new();
    for (r, read_op) in ops.iter().enumerate() {
        if read_op.input != RegisterOp::Read || read_op.is_indeterminate() {
            continue;
        }
        for &(key, stale, overwritten_by) in &setters {
            if key == read_op.key && overwritten_by < read_op.call_ns {
                candidates.push((r, Some(stale)));
            }
        }
    }
    candidates
}

#[test]
fn random_histories_with_a_stale_read_are_illegal() {
    let model = Register::with_initial(0, 0);
    let mut mutated = 0;
    for seed in 0..RANDOM_OK_SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let g = small_gen(&mut rng);
        let mut ops = generate(&mut rng, g);
        let candidates = stale_read_candidates(&ops);
        if candidates.is_empty() {
            continue;
        }
        let (r, stale) = candidates[rng.gen_range(0..candidates.len())];
        ops[r].output = Some(RegisterOut::Read(stale));
        let v = check(&model, &hist(ops), &opts());
        assert!(v.is_illegal(), "seed {seed}: read #{r} -> {stale:?}: {v}");
        mutated += 1;
    }
    assert!(
        mutated > RANDOM_OK_SEEDS / 3,
        "only {mutated} histories could be mutated"
    );
    println!("stale-read mutations checked illegal: {mutated} of {RANDOM_OK_SEEDS} seeds");
}

// ---------------------------------------------------------------------------------------------
// Brute-force cross-check
// ---------------------------------------------------------------------------------------------

/// Linearizability by exhaustive search, without partitioning or memoisation: try every order
/// of all completed operations and any subset of the indeterminate ones (including reads)
/// that respects real time (`a` before `b` whenever `a` returned strictly before `b` was
/// called).
fn brute_force(model: &Register<u64>, ops: &[Oper]) -> bool {
    fn go(
        model: &Register<u64>,
        ops: &[Oper],
        keys: &[String],
        states: &mut Vec<Option<(u64, i32)>>,
        placed: &mut Vec<bool>,
    ) -> bool {
        let remaining_completed = (0..ops.len()).any(|j| !placed[j] && !ops[j].is_indeterminate());
        if !remaining_completed {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            let must_wait = (0..ops.len()).any(|j| {
                j != i && !placed[j] && ops[j].return_ns.is_some_and(|ret| ret < ops[i].call_ns)
            });
            if must_wait {
                continue;
            }
            let k = keys.iter().position(|k| *k == ops[i].key).unwrap_or(0);
            let next = match &ops[i].output {
                Some(out) => model.step(&states[k], &ops[i].input, out),
                None => model.step_indeterminate(&states[k], &ops[i].input),
            };
            let Some(next) = next else {
                continue;
            };
            let previous = std::mem::replace(&mut states[k], next);
            placed[i] = true;
            if go(model, ops, keys, states, placed) {
                return true;
            }
            placed[i] = false;
            states[k] = previous;
        }
        false
    }
    let mut keys: Vec<String> = ops.iter().map(|op| op.key.clone()).collect();
    keys.sort();
    keys.dedup();
    let mut states = vec![model.init(); keys.len()];
    go(model, ops, &keys, &mut states, &mut vec![false; ops.len()])
}

/// Randomly damages a generated history so that roughly half of the results are illegal.
fn perturb(rng: &mut StdRng, ops: &mut [Oper]) {
    if ops.is_empty() {
        return;
    }
    for _ in 0..rng.gen_range(1..=2) {
        let i = rng.gen_range(0..ops.len());
        let op = &mut ops[i];
        match rng.gen_range(0..4) {
            // Change the output.
            0 | 1 => {
                if let Some(out) = op.output.as_mut() {
                    *out = match out.clone() {
                        RegisterOut::Read(Some((v, n))) => match rng.gen_range(0..3) {
                            0 => RegisterOut::Read(Some((v, n + rng.gen_range(-1..=1)))),
                            1 => RegisterOut::Read(Some((rng.gen_range(0..8), n))),
                            _ => RegisterOut::Read(None),
                        },
                        RegisterOut::Read(None) => {
                            RegisterOut::Read(Some((rng.gen_range(0..8), rng.gen_range(0..3))))
                        }
                        RegisterOut::Written(n) => match rng.gen_range(0..3) {
                            0 => RegisterOut::Written(n + 1),
                            1 => RegisterOut::Written(n - 1),
                            _ => RegisterOut::BadVersion,
                        },
                        RegisterOut::BadVersion => RegisterOut::Written(rng.gen_range(0..4)),
                        RegisterOut::NoNode => RegisterOut::Deleted,
                        RegisterOut::Deleted => RegisterOut::NoNode,
                        RegisterOut::Created => RegisterOut::NodeExists,
                        RegisterOut::NodeExists => RegisterOut::Created,
                    };
                }
            }
            // Move the interval.
            2 => {
                let shift = rng.gen_range(0..=20);
                if rng.gen_bool(0.5) {
                    op.call_ns += shift;
                    op.return_ns = op.return_ns.map(|r| r + shift);
                } else {
                    op.call_ns = op.call_ns.saturating_sub(shift);
                    op.return_ns = op
                        .return_ns
                        .map(|r| r.saturating_sub(shift).max(op.call_ns));
                }
            }
            // Make it indeterminate (always keeps a legal history legal).
            _ => {
                op.output = None;
                op.return_ns = None;
            }
        }
    }
}

const CROSS_CHECK_SEEDS: u64 = 4_000;

#[test]
fn agrees_with_brute_force_on_tiny_histories() {
    let model = Register::with_initial(0, 0);
    let (mut ok, mut illegal) = (0, 0);
    for seed in 0..CROSS_CHECK_SEEDS {
        let mut rng = StdRng::seed_from_u64(0xC0FFEE ^ seed);
        let g = Gen {
            clients: rng.gen_range(1..=4),
            ops: rng.gen_range(1..=7),
            keys: if rng.gen_bool(0.8) { 1 } else { 2 },
            p_info: if rng.gen_bool(0.5) { 0.2 } else { 0.0 },
            max_duration: rng.gen_range(0..=20),
            max_gap: rng.gen_range(0..=6),
        };
        let mut ops = generate(&mut rng, g);
        if rng.gen_bool(0.6) {
            perturb(&mut rng, &mut ops);
        }
        let expected = brute_force(&model, &ops);
        let options = CheckOptions {
            threads: 1,
            ..opts()
        };
        let v = check(&model, &hist(ops.clone()), &options);
        assert!(!v.is_unknown(), "seed {seed}: {v}");
        assert_eq!(
            v.is_ok(),
            expected,
            "seed {seed}: brute force says {expected}, checker: {v}\n{ops:#?}"
        );
        if expected {
            ok += 1;
        } else {
            illegal += 1;
        }
    }
    println!(
        "cross-checked {CROSS_CHECK_SEEDS} seeds against brute force: {ok} ok, {illegal} illegal"
    );
    assert!(
        ok > CROSS_CHECK_SEEDS / 4 && illegal > CROSS_CHECK_SEEDS / 5,
        "ok {ok}, illegal {illegal}"
    );
}

// ---------------------------------------------------------------------------------------------
// Performance
// ---------------------------------------------------------------------------------------------

/// ~5 000 operations over 5 keys by 8 clients with a few indeterminate ones. Not a timing
/// assertion: the duration is printed (`--nocapture`).
#[test]
fn performance_5000_ops_5_keys_8_clients() {
    let mut rng = StdRng::seed_from_u64(42);
    let ops = generate(
        &mut rng,
        Gen {
            clients: 8,
            ops: 5_000,
            keys: 5,
            p_info: 0.004,
            max_duration: 1_000,
            max_gap: 50,
        },
    );
    let history = hist(ops);
    let started = Instant::now();
    let report = check_report(&Register::with_initial(0, 0), &history, &opts());
    let elapsed = started.elapsed();
    assert_ok(&report.verdict);
    println!(
        "checked {} ops ({} indeterminate) over {} keys in {elapsed:?}",
        history.len(),
        history.indeterminate_count(),
        report.keys.len()
    );
    for k in &report.keys {
        println!(
            "  {}: {} ops, {} indeterminate, {} steps, {:?}",
            k.key, k.ops, k.indeterminate, k.steps, k.elapsed
        );
    }

    // The same history with one stale read must be found illegal, also in reasonable time.
    let mut ops = history.into_ops();
    let candidates = stale_read_candidates(&ops);
    let (r, stale) = candidates[candidates.len() / 2];
    ops[r].output = Some(RegisterOut::Read(stale));
    let started = Instant::now();
    let v = check(&Register::with_initial(0, 0), &hist(ops), &opts());
    println!(
        "with one stale read (#{r}): {} in {:?}",
        if v.is_illegal() { "illegal" } else { "?" },
        started.elapsed()
    );
    assert_illegal(&v);
}
