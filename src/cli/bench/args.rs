//! The arguments of `baton bench`: the workloads and their flags.

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// SetData of random existing keys.
    Put,
    /// Only create the keys of put and get (`--key-space` of them), timed.
    Fill,
    /// GetData of random existing keys.
    Get,
    /// Create a fresh node, then delete it.
    CreateDelete,
    /// Write-to-watch-event latency with many watchers.
    Watch,
    /// Contended exclusive lock: grants/s, acquire and hand-off latency.
    Lock,
}

impl Workload {
    pub(super) fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Fill => "fill",
            Workload::Get => "get",
            Workload::CreateDelete => "create-delete",
            Workload::Watch => "watch",
            Workload::Lock => "lock",
        }
    }
}

/// Arguments of `bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..10_001))]
    pub clients: u64,
    /// Connections shared by the clients (client i uses connection i % K; connection j goes to
    /// endpoint j % endpoints). Default: min(clients, 8).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..1_001))]
    pub conns: Option<u64>,
    /// Measured duration in seconds [default: 10]. For fill, the most time the fill may take
    /// (default: no limit).
    #[arg(long, value_parser = parse_positive_seconds)]
    pub seconds: Option<f64>,
    /// Warm-up in seconds before measuring (its requests are not recorded).
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    pub warmup: f64,
    /// Size of each written value in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Number of distinct keys for put and get; the keys fill creates.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..10_000_001))]
    pub key_space: u64,
    /// Serializable reads for get (default: linearizable).
    #[arg(long)]
    pub serializable: bool,
    /// Number of watchers for the watch workload.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..10_001))]
    pub watchers: u64,
    /// Timeout of each request in milliseconds; a request that times out is an error. For
    /// lock, also the longest wait in the queue.
    #[arg(long, value_name = "MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub op_timeout: u64,
    /// For lock: how long each holder holds the lock before releasing it, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub hold_ms: u64,
    /// Also report where the writes spent their time on each member: the members' write-path
    /// stages are reset before the run and printed after it (as `baton cluster stages`).
    #[arg(long)]
    pub breakdown: bool,
    /// ACL entry SCHEME:ID:PERMS (repeatable) for the keys put and get create; open if none
    /// (measures the ACL checks with `--user`).
    #[arg(long = "acl", value_name = "ENTRY")]
    pub acl: Vec<String>,
    /// Send writes without request ids (as clients before them did: no retry of a write whose
    /// outcome is unknown), to measure what the ids cost.
    #[arg(long)]
    pub no_request_ids: bool,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in 0..=86400")),
    }
}

fn parse_positive_seconds(s: &str) -> Result<f64, String> {
    match parse_seconds(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be more than 0".to_string()),
    }
}

/// The measured duration when `--seconds` is not given.
const DEFAULT_SECONDS: f64 = 10.0;

impl BenchArgs {
    pub(super) fn conns(&self) -> u64 {
        self.conns.unwrap_or_else(|| self.clients.min(8))
    }

    pub(super) fn seconds(&self) -> f64 {
        self.seconds.unwrap_or(DEFAULT_SECONDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|w| w.bench)
    }

    #[test]
    fn defaults() {
        let a = parse(&["put"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::Put);
        assert_eq!(a.clients, 16);
        assert_eq!(a.conns(), 8);
        assert_eq!(a.seconds(), 10.0);
        assert_eq!(a.warmup, 1.0);
        assert_eq!(a.value_size, 256);
        assert_eq!(a.key_space, 10_000);
        assert_eq!(a.watchers, 10);
        assert!(!a.serializable);
        let a =
            parse(&["get", "--clients", "3", "--serializable"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.conns(), 3);
        assert!(a.serializable);
        let a = parse(&[
            "create-delete",
            "--conns",
            "2",
            "--seconds",
            "0.5",
            "--warmup",
            "0",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::CreateDelete);
        assert_eq!(a.conns(), 2);
        assert_eq!(a.seconds(), 0.5);
    }

    #[test]
    fn fill_takes_the_key_space_and_an_optional_deadline() {
        let a = parse(&["fill", "--key-space", "1000000", "--clients", "64"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::Fill);
        assert_eq!((a.key_space, a.clients, a.conns()), (1_000_000, 64, 8));
        assert_eq!(a.value_size, 256);
        assert_eq!(a.seconds, None, "no deadline unless given");
        let a = parse(&[
            "fill",
            "--key-space",
            "10",
            "--seconds",
            "600",
            "--value-size",
            "1",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.seconds, a.value_size), (Some(600.0), 1));
        assert!(parse(&["fill", "--seconds", "0"]).is_err());
        assert!(parse(&["fill", "--key-space", "0"]).is_err());
    }

    #[test]
    fn lock_workload_flags() {
        let a = parse(&["lock", "--clients", "8", "--hold-ms", "5", "--seconds", "2"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.workload, Workload::Lock);
        assert_eq!((a.clients, a.hold_ms, a.seconds()), (8, 5, 2.0));
        assert_eq!(parse(&["lock"]).map(|a| a.hold_ms).ok(), Some(0));
        assert!(parse(&["lock", "--hold-ms", "-1"]).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &["put", "--clients", "0"][..],
            &["put", "--seconds", "0"][..],
            &["put", "--seconds", "nan"][..],
            &["put", "--warmup", "-1"][..],
            &["put", "--key-space", "0"][..],
            &["fly"][..],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
