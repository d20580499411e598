//! Recording and reporting: the measuring window, each client's tally (an hdrhistogram of
//! latencies in microseconds, errors by kind), and the run's report as a human summary and
//! one JSON object.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// When recording starts and when everything stops.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub(super) record_start: Instant,
    pub(super) end: Instant,
}

/// What one client measured.
#[derive(Debug)]
pub(super) struct Tally {
    pub(super) hist: Histogram<u64>,
    pub(super) ops: u64,
    pub(super) errors: u64,
    pub(super) error_kinds: BTreeMap<String, u64>,
}

impl Tally {
    pub(super) fn new() -> Self {
        Tally {
            hist: new_histogram(),
            ops: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
        }
    }

    /// Records a request that started at `start` and just ended with `result`.
    pub(super) fn record(&mut self, window: &Window, start: Instant, result: &Result<(), String>) {
        if start < window.record_start {
            return;
        }
        match result {
            Ok(()) => {
                let done = Instant::now();
                if done <= window.end {
                    self.hist.saturating_record(micros(done - start));
                    self.ops += 1;
                }
            }
            Err(kind) => self.error(kind),
        }
    }

    pub(super) fn error(&mut self, kind: &str) {
        self.errors += 1;
        *self.error_kinds.entry(kind.to_string()).or_insert(0) += 1;
    }

    pub(super) fn merge(&mut self, other: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.ops += other.ops;
        self.errors += other.errors;
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_insert(0) += v;
        }
    }
}

pub(super) fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The result of a run.
#[derive(Debug)]
pub(super) struct Report {
    pub(super) workload: &'static str,
    pub(super) clients: u64,
    pub(super) conns: u64,
    pub(super) seconds: f64,
    pub(super) ops: u64,
    pub(super) errors: u64,
    pub(super) hist: Histogram<u64>,
    pub(super) error_kinds: BTreeMap<String, u64>,
    pub(super) extras: Map<String, Value>,
}

pub(super) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50, p99, p99.9 and max of a histogram, in milliseconds (0 if empty).
pub(super) fn percentiles(h: &Histogram<u64>) -> [f64; 4] {
    if h.is_empty() {
        return [0.0; 4];
    }
    [
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    ]
}

impl Report {
    fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            (self.ops as f64 / self.seconds * 10.0).round() / 10.0
        } else {
            0.0
        }
    }

    pub(super) fn json(&self) -> Value {
        let [p50, p99, p999, max] = percentiles(&self.hist);
        let mut v = json!({
            "workload": self.workload,
            "clients": self.clients,
            "conns": self.conns,
            "ops": self.ops,
            "seconds": self.seconds,
            "ops_per_sec": self.ops_per_sec(),
            "p50_ms": p50,
            "p99_ms": p99,
            "p999_ms": p999,
            "max_ms": max,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
        });
        if let Some(obj) = v.as_object_mut() {
            for (k, val) in &self.extras {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    }

    pub(super) fn summary(&self) -> String {
        let [p50, p99, p999, max] = percentiles(&self.hist);
        let mut s = format!(
            "bench {}: {} clients over {} connections, {:.1} s measured\n  ops      {} ({:.1} ops/s)\n  errors   {}",
            self.workload,
            self.clients,
            self.conns,
            self.seconds,
            self.ops,
            self.ops_per_sec(),
            self.errors
        );
        if !self.error_kinds.is_empty() {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!(" ({})", kinds.join(", ")));
        }
        s.push_str(&format!(
            "\n  latency  p50 {p50:.3} ms  p99 {p99:.3} ms  p99.9 {p999:.3} ms  max {max:.3} ms"
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_respects_the_window() {
        let now = Instant::now();
        let window = Window {
            record_start: now,
            end: now + Duration::from_secs(60),
        };
        let mut t = Tally::new();
        t.record(&window, now - Duration::from_millis(1), &Ok(()));
        t.record(&window, now - Duration::from_millis(1), &Err("X".into()));
        assert_eq!(
            (t.ops, t.errors),
            (0, 0),
            "warm-up requests are not recorded"
        );
        t.record(&window, now, &Ok(()));
        t.record(&window, now, &Err("TIMEOUT".into()));
        t.record(&window, now, &Err("TIMEOUT".into()));
        assert_eq!((t.ops, t.errors), (1, 2));
        assert_eq!(t.error_kinds.get("TIMEOUT"), Some(&2));
        let past = Window {
            record_start: now - Duration::from_secs(2),
            end: now - Duration::from_secs(1),
        };
        let mut late = Tally::new();
        late.record(&past, now - Duration::from_millis(1500), &Ok(()));
        assert_eq!(
            late.ops, 0,
            "requests finishing after the end are not recorded"
        );
        t.merge(late);
        assert_eq!(t.ops, 1);
    }

    #[test]
    fn report_json_has_the_contract_fields() {
        let mut hist = new_histogram();
        for us in [1000u64, 2000, 3000, 4000, 100_000] {
            hist.saturating_record(us);
        }
        let mut extras = Map::new();
        extras.insert("value_size".into(), json!(256));
        let report = Report {
            workload: "put",
            clients: 4,
            conns: 2,
            seconds: 2.0,
            ops: 5,
            errors: 1,
            hist,
            error_kinds: BTreeMap::from([("TIMEOUT".to_string(), 1)]),
            extras,
        };
        let line = report.json().to_string();
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        for field in [
            "workload",
            "clients",
            "conns",
            "ops",
            "seconds",
            "ops_per_sec",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "errors",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["workload"], "put");
        assert_eq!(v["ops_per_sec"], 2.5);
        assert_eq!(v["value_size"], 256);
        assert_eq!(v["error_kinds"]["TIMEOUT"], 1);
        let p50 = v["p50_ms"].as_f64().unwrap_or(-1.0);
        assert!((2.9..=3.1).contains(&p50), "p50 {p50}");
        let max = v["max_ms"].as_f64().unwrap_or(-1.0);
        assert!((99.0..=101.0).contains(&max), "max {max}");
        let summary = report.summary();
        assert!(summary.contains("2.5 ops/s"));
        assert!(summary.contains("TIMEOUT 1"));
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(percentiles(&new_histogram()), [0.0; 4]);
    }
}
