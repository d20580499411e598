//! Prometheus metrics of one member: one registry per member (members started in one process
//! never share a value), served as OpenMetrics text on the metrics port.
//!
//! Three sources: handles updated where things happen (gRPC requests, connections, health
//! checks), the write path's stage histograms ([`crate::stages::Stages`]), and values read at
//! each scrape from the consensus core, the tree, the watch hub, the disk and `/proc`.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use openraft::ServerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use prost::Message;

use crate::auth::Authenticator;
use crate::consensus::space;
use crate::member::Member;

/// Labels of the per-method gRPC metrics (names as in go-grpc-prometheus).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `baton.v1.ZNodes`.
    pub grpc_service: String,
    /// `Create`.
    pub grpc_method: String,
    /// `unary`, `server_stream`, `client_stream` or `bidi_stream`.
    pub grpc_type: &'static str,
}

/// [`MethodLabels`] and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// `baton.v1.ZNodes`.
    pub grpc_service: String,
    /// `Create`.
    pub grpc_method: String,
    /// `unary`, ...
    pub grpc_type: &'static str,
    /// `OK`, `NotFound`, `ResourceExhausted`, ... (Go's spelling, as etcd's alerts expect).
    pub grpc_code: &'static str,
}

/// Why a connection was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `per_ip` or `total`.
    pub reason: &'static str,
}

/// One health check's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// `livez` or `readyz`.
    pub endpoint: &'static str,
    /// The check.
    pub check: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// A method of the client port: its labels, and whether it is a long wait, a stream or a
/// health check (not limited by the in-flight bound, not logged as slow).
#[derive(Clone, Debug)]
pub struct Method {
    /// Its labels.
    pub labels: MethodLabels,
    /// A stream, a call that waits by design (lock acquire, campaign), or a health check.
    pub long_lived: bool,
}

fn buckets() -> impl Iterator<Item = f64> {
    // 100 µs .. 26 s.
    exponential_buckets(0.000_1, 2.0, 19)
}

/// The metrics a member updates as it serves.
#[derive(Debug)]
pub struct Metrics {
    /// Requests received, by method.
    pub started: Family<MethodLabels, Counter>,
    /// Requests answered, by method and code.
    pub handled: Family<CodeLabels, Counter>,
    /// Time to answer, by method.
    pub handling: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// Requests in flight (streams included).
    pub in_flight: Gauge,
    /// Requests refused because too many were in flight.
    pub shed: Counter,
    /// Open client connections.
    pub connections: Gauge,
    /// Connections refused at accept.
    pub connections_rejected: Family<RejectLabels, Counter>,
    /// Health checks run.
    pub health_checks: Family<CheckLabels, Counter>,
    methods: std::collections::HashMap<String, Method>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, with the methods the client port serves read from the compiled
    /// service descriptors.
    pub fn new() -> Self {
        let mut methods = std::collections::HashMap::new();
        for set in [
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for svc in file.service {
                    let service = format!("{package}.{}", svc.name.unwrap_or_default());
                    for m in svc.method {
                        let name = m.name.unwrap_or_default();
                        let (cs, ss) = (
                            m.client_streaming.unwrap_or(false),
                            m.server_streaming.unwrap_or(false),
                        );
                        let grpc_type = match (cs, ss) {
                            (false, false) => "unary",
                            (false, true) => "server_stream",
                            (true, false) => "client_stream",
                            (true, true) => "bidi_stream",
                        };
                        // Waits by design, and health checks (never shed: a load balancer
                        // must see an overloaded member as alive).
                        let waits = matches!(
                            (service.as_str(), name.as_str()),
                            ("baton.v1.Locks", "Acquire")
                                | ("baton.v1.Elections", "Campaign")
                                | ("grpc.health.v1.Health", _)
                        );
                        methods.insert(
                            format!("/{service}/{name}"),
                            Method {
                                labels: MethodLabels {
                                    grpc_service: service.clone(),
                                    grpc_method: name,
                                    grpc_type,
                                },
                                long_lived: cs || ss || waits,
                            },
                        );
                    }
                }
            }
        }
        let connections_rejected = Family::<RejectLabels, Counter>::default();
        for reason in ["per_ip", "total"] {
            // Present from the start, so that rate() sees the first refusal.
            let _ = connections_rejected.get_or_create(&RejectLabels { reason });
        }
        Metrics {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(|| Histogram::new(buckets())),
            in_flight: Gauge::default(),
            shed: Counter::default(),
            connections: Gauge::default(),
            connections_rejected,
            health_checks: Family::default(),
            methods,
        }
    }

    /// The method at an HTTP/2 path, or `None` for a path no service serves (reflection's
    /// and unknown paths are not labelled, so a client cannot grow the label set).
    pub fn method(&self, path: &str) -> Option<&Method> {
        self.methods.get(path)
    }

    /// Every method of the client port.
    pub fn methods(&self) -> HashSet<&str> {
        self.methods.keys().map(String::as_str).collect()
    }

    /// The member's registry: these handles, the stage histograms and the values read from
    /// `member` and `auth` at each scrape.
    pub fn registry(self: &Arc<Self>, member: Arc<Member>, auth: Arc<Authenticator>) -> Registry {
        let mut r = Registry::default();
        r.register(
            "grpc_server_started",
            "RPCs started on the server.",
            self.started.clone(),
        );
        r.register(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            self.handled.clone(),
        );
        r.register(
            "grpc_server_handling_seconds",
            "Time to complete an RPC (streams: until they end).",
            self.handling.clone(),
        );
        let b = r.sub_registry_with_prefix("baton");
        b.register(
            "requests_in_flight",
            "Client requests being served.",
            self.in_flight.clone(),
        );
        b.register(
            "requests_shed",
            "Client requests refused with RESOURCE_EXHAUSTED/OVERLOADED because too many were in flight.",
            self.shed.clone(),
        );
        b.register(
            "connections",
            "Open client connections.",
            self.connections.clone(),
        );
        b.register(
            "connections_rejected",
            "Client connections closed at accept by a connection limit.",
            self.connections_rejected.clone(),
        );
        b.register(
            "health_checks",
            "Health checks run, by endpoint, check and result.",
            self.health_checks.clone(),
        );
        for (name, help, h) in member.stages().histograms() {
            b.register(name, help, h.clone());
        }
        r.register_collector(Box::new(Scraped { member, auth }));
        r
    }
}

/// Values read at each scrape.
struct Scraped {
    member: Arc<Member>,
    auth: Arc<Authenticator>,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: impl TryInto<i64>,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v.try_into().unwrap_or(i64::MAX));
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

fn gauge_f(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

fn gauge_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scraped {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let member = &self.member;
        let e = &mut enc;
        let m = member.raft_metrics();
        let me = member.config().id;
        let leader = m.current_leader;
        gauge(
            e,
            "baton_server_has_leader",
            "1 if this member knows a leader.",
            i64::from(leader.is_some()),
        )?;
        gauge(
            e,
            "baton_server_is_leader",
            "1 if this member is the leader.",
            i64::from(leader == Some(me) && m.state == ServerState::Leader),
        )?;
        gauge(
            e,
            "baton_server_is_learner",
            "1 if this member is a learner (receives the log, does not vote).",
            i64::from(m.state == ServerState::Learner),
        )?;
        gauge(e, "baton_server_id", "This member's id.", me)?;
        gauge(
            e,
            "baton_raft_leader_id",
            "The leader's id as known here (0: none).",
            leader.unwrap_or(0),
        )?;
        gauge(e, "baton_raft_term", "Current Raft term.", m.current_term)?;
        gauge(
            e,
            "baton_raft_last_log_index",
            "Last index in this member's log.",
            m.last_log_index.unwrap_or(0),
        )?;
        gauge(
            e,
            "baton_raft_applied_index",
            "Last index applied to the state machine.",
            m.last_applied.map_or(0, |l| l.index),
        )?;
        gauge(
            e,
            "baton_raft_snapshot_index",
            "Index covered by the newest snapshot.",
            m.snapshot.map_or(0, |l| l.index),
        )?;
        gauge(
            e,
            "baton_raft_purged_index",
            "Last index purged from the log.",
            m.purged.map_or(0, |l| l.index),
        )?;
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        let learners = membership.learner_ids().count();
        gauge_family(
            e,
            "baton_raft_members",
            "Members of the cluster by role.",
            [
                (RoleLabel { role: "voter" }, voters as i64),
                (RoleLabel { role: "learner" }, learners as i64),
            ],
        )?;
        if let (Some(repl), Some(last)) = (&m.replication, m.last_log_index) {
            gauge_family(
                e,
                "baton_raft_follower_lag_entries",
                "Leader only: entries each other member still lacks.",
                repl.iter()
                    .filter(|(id, _)| **id != me)
                    .map(|(id, matched)| {
                        let have = matched.map_or(0, |l| l.index);
                        (
                            PeerLabel {
                                peer: id.to_string(),
                            },
                            last.saturating_sub(have) as i64,
                        )
                    }),
            )?;
        }
        if let Some(age) = m.millis_since_quorum_ack {
            gauge_f(
                e,
                "baton_raft_quorum_ack_age_seconds",
                "Leader only: time since a quorum last acknowledged it.",
                age as f64 / 1000.0,
            )?;
        }
        let c = &member.stages().counters;
        counter(
            e,
            "baton_server_leader_changes_seen",
            "Leaders this member has seen since it started.",
            c.leader_changes.load(Relaxed),
        )?;
        counter(
            e,
            "baton_raft_term_changes",
            "Term changes this member has seen since it started.",
            member.leadership_counters().term_changes,
        )?;
        counter(
            e,
            "baton_raft_fast_elections",
            "Elections this member won through the failover fast path.",
            member.leadership_counters().fast_elections,
        )?;
        counter(
            e,
            "baton_proposals_committed",
            "Client requests proposed through this member that were committed.",
            c.proposals_committed.load(Relaxed),
        )?;
        counter(e, "baton_proposals_failed", "Client requests proposed through this member that failed (no leader, leader lost, refused, timed out).", c.proposals_failed.load(Relaxed))?;
        counter(
            e,
            "baton_slow_applies",
            "Applies slower than --slow-apply-ms.",
            c.slow_applies.load(Relaxed),
        )?;
        counter(
            e,
            "baton_slow_flushes",
            "Log syncs slower than --slow-flush-ms.",
            c.slow_flushes.load(Relaxed),
        )?;
        counter(
            e,
            "baton_slow_snapshots",
            "Snapshot builds or installs slower than --slow-snapshot-ms.",
            c.slow_snapshots.load(Relaxed),
        )?;
        counter(
            e,
            "baton_slow_requests",
            "Client requests slower than --slow-request-ms.",
            c.slow_requests.load(Relaxed),
        )?;

        let (znodes, ephemerals, sessions, last_zxid, alarms) = member.read_tree(|s| {
            (
                s.node_count(),
                s.ephemeral_count(),
                s.session_count(),
                s.last_zxid,
                space::raised(s).len(),
            )
        });
        gauge(e, "baton_znodes", "Znodes in the tree, / included.", znodes)?;
        gauge(e, "baton_ephemerals", "Ephemeral znodes.", ephemerals)?;
        gauge(e, "baton_sessions", "Live sessions.", sessions)?;
        gauge(
            e,
            "baton_last_zxid",
            "zxid of the last change to the tree.",
            last_zxid,
        )?;
        gauge_family(
            e,
            "baton_alarm_active",
            "Raised cluster alarms by kind.",
            [(AlarmLabel { alarm: "NOSPACE" }, alarms as i64)],
        )?;

        let hub = member.watches();
        let (kinds, streams) = hub.census();
        gauge_family(
            e,
            "baton_watches",
            "Watches registered on this member by kind.",
            ["data", "children", "exists", "persistent", "recursive"]
                .into_iter()
                .map(|k| {
                    (
                        KindLabel { kind: k },
                        kinds.get(k).copied().unwrap_or(0) as i64,
                    )
                }),
        )?;
        gauge(e, "baton_watch_streams", "Open watch streams.", streams)?;
        counter(
            e,
            "baton_watch_events_sent",
            "Events delivered to watch streams.",
            hub.counters.events_sent.load(Relaxed),
        )?;
        counter(
            e,
            "baton_watch_slow_streams_closed",
            "Watch streams closed because they did not read their events.",
            hub.counters.slow_streams_cut.load(Relaxed),
        )?;
        counter(
            e,
            "baton_watches_refused",
            "Watches refused by a watch limit.",
            hub.counters.watches_refused.load(Relaxed),
        )?;
        let a = &self.auth.counters;
        counter(
            e,
            "baton_auth_failed_logins",
            "Failed logins: malformed or refused credentials, wrong super passwords, guessed digest passwords.",
            a.failed_logins.load(Relaxed),
        )?;
        counter(
            e,
            "baton_auth_throttled",
            "Requests refused because their address had too many failed logins.",
            a.throttled.load(Relaxed),
        )?;
        counter(
            e,
            "baton_auth_unauthenticated",
            "Anonymous requests refused under --require-auth.",
            a.unauthenticated.load(Relaxed),
        )?;
        counter(
            e,
            "baton_auth_admin_denied",
            "Requests refused by the admin gate (no ADMIN on /).",
            a.admin_denied.load(Relaxed),
        )?;

        let (limits, measured) = member.space();
        let measured = measured.filter(|s| s.used > 0 || s.free > 0);
        let used = match measured {
            Some(s) => s.used,
            None => space::dir_usage(&member.config().data_dir),
        };
        gauge(
            e,
            "baton_db_size_bytes",
            "Bytes the data directory occupies.",
            used,
        )?;
        if let Some(s) = measured {
            gauge(
                e,
                "baton_disk_free_bytes",
                "Bytes free on the data directory's file system.",
                s.free,
            )?;
        }
        gauge(
            e,
            "baton_quota_bytes",
            "The data directory's quota (0: none).",
            limits.quota,
        )?;
        gauge(
            e,
            "baton_space_reserve_bytes",
            "Free space kept in reserve before writes are refused (0: none).",
            limits.reserve,
        )?;
        gauge(
            e,
            "baton_snapshot_size_bytes",
            "Size of the newest snapshot built or installed since start.",
            member.snapshot_bytes(),
        )?;

        let mut info = enc.encode_descriptor(
            "baton_build",
            "Version of this member.",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        process(&mut enc)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlarmLabel {
    alarm: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The standard process metrics, from `/proc/self` (Linux; nothing elsewhere).
fn process(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(e, "process_open_fds", "Open file descriptors.", fds.count())?;
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let max = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(max) = max {
            gauge(e, "process_max_fds", "Limit of open file descriptors.", max)?;
        }
    }
    let page = rustix::param::page_size() as u64;
    let ticks = 100.0; // USER_HZ on Linux.
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may contain spaces) start at ") ".
        if let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            // rest[0] is field 3 (state): utime 14, stime 15, starttime 22, vsize 23, rss 24.
            if let (Some(u), Some(s)) = (num(11), num(12)) {
                let c = ConstCounter::new((u + s) as f64 / ticks);
                let m = e.encode_descriptor(
                    "process_cpu_seconds",
                    "User and system CPU time.",
                    None,
                    c.metric_type(),
                )?;
                c.encode(m)?;
            }
            if let Some(rss) = num(21) {
                gauge(
                    e,
                    "process_resident_memory_bytes",
                    "Resident memory.",
                    rss * page,
                )?;
            }
            if let Some(vs) = num(20) {
                gauge(e, "process_virtual_memory_bytes", "Virtual memory.", vs)?;
            }
        }
    }
    Ok(())
}
