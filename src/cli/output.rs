//! Formatting of CLI output: tables for people, one JSON object per line for scripts.
//!
//! Everything here is pure (values in, strings out) so it can be unit-tested; writing to
//! stdout happens in [`Printer`].

use std::io::Write;

use serde_json::{json, Value};

use crate::proto::v1::{
    Alarm, CreateMode, EventType, Member, Role, SessionInfo, Stat, StatusResponse, WatchEvent,
};

/// Output format chosen with `-o`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text and aligned tables.
    #[default]
    Table,
    /// One JSON object per line.
    Json,
}

/// Writes lines to stdout. A closed pipe (`baton ls -R / | head`) surfaces as an
/// `io::ErrorKind::BrokenPipe` error, which the caller treats as a normal end.
pub struct Printer {
    /// The chosen format.
    pub format: OutputFormat,
    /// None: output is discarded.
    out: Option<std::io::Stdout>,
}

impl Printer {
    /// A printer to stdout.
    pub fn new(format: OutputFormat) -> Self {
        Printer {
            format,
            out: Some(std::io::stdout()),
        }
    }

    /// A printer that discards everything.
    pub fn sink() -> Self {
        Printer {
            format: OutputFormat::Json,
            out: None,
        }
    }

    /// Whether JSON was asked for.
    pub fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Writes one line.
    pub fn line(&mut self, line: &str) -> std::io::Result<()> {
        let Some(out) = &self.out else {
            return Ok(());
        };
        let mut out = out.lock();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Writes one JSON value on one line.
    pub fn value(&mut self, value: &Value) -> std::io::Result<()> {
        self.line(&value.to_string())
    }

    /// Writes raw bytes (a node's data).
    pub fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(out) = &self.out else {
            return Ok(());
        };
        let mut out = out.lock();
        out.write_all(bytes)?;
        out.flush()
    }
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unix milliseconds as an RFC 3339 UTC timestamp with milliseconds
/// (`2024-03-01T12:00:00.000Z`). Out-of-range values are printed as the raw number.
pub fn format_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return ms.to_string();
    }
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-since-epoch to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A session id as printed: `0x` and hex, as in server messages.
pub fn session_id(id: u64) -> String {
    format!("{id:#x}")
}

/// Parses a session id written in decimal or as `0x` hex.
pub fn parse_session_id(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    };
    match parsed {
        Ok(0) => Err("session id 0 is not a session".to_string()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!(
            "invalid session id {s:?}: expected decimal or 0x hex"
        )),
    }
}

/// The name of a creation mode number.
pub fn mode_name(mode: i32) -> String {
    CreateMode::try_from(mode)
        .map(|m| m.as_str_name().to_string())
        .unwrap_or_else(|_| mode.to_string())
}

/// The name of an event type number.
pub fn event_type_name(t: i32) -> String {
    EventType::try_from(t)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The name of a role number.
pub fn role_name(role: i32) -> String {
    match Role::try_from(role) {
        Ok(Role::Unspecified) => "UNKNOWN".to_string(),
        Ok(r) => r.as_str_name().to_string(),
        Err(_) => role.to_string(),
    }
}

/// A Stat as a JSON object (snake_case fields, mode by name).
pub fn stat_json(stat: &Stat) -> Value {
    json!({
        "czxid": stat.czxid,
        "mzxid": stat.mzxid,
        "pzxid": stat.pzxid,
        "ctime": stat.ctime,
        "mtime": stat.mtime,
        "version": stat.version,
        "cversion": stat.cversion,
        "aversion": stat.aversion,
        "ephemeral_owner": stat.ephemeral_owner,
        "data_length": stat.data_length,
        "num_children": stat.num_children,
        "mode": mode_name(stat.mode),
        "ttl_ms": stat.ttl_ms,
    })
}

/// A Stat as `name = value` lines, like ZooKeeper's `stat`.
pub fn stat_table(stat: &Stat) -> String {
    let mut rows = vec![
        ("czxid", stat.czxid.to_string()),
        ("mzxid", stat.mzxid.to_string()),
        ("pzxid", stat.pzxid.to_string()),
        (
            "ctime",
            format!("{} ({})", format_time_ms(stat.ctime), stat.ctime),
        ),
        (
            "mtime",
            format!("{} ({})", format_time_ms(stat.mtime), stat.mtime),
        ),
        ("version", stat.version.to_string()),
        ("cversion", stat.cversion.to_string()),
        ("aversion", stat.aversion.to_string()),
        ("ephemeralOwner", session_id(stat.ephemeral_owner)),
        ("dataLength", stat.data_length.to_string()),
        ("numChildren", stat.num_children.to_string()),
        ("mode", mode_name(stat.mode)),
    ];
    if stat.ttl_ms != 0 {
        rows.push(("ttl_ms", stat.ttl_ms.to_string()));
    }
    rows.iter()
        .map(|(k, v)| format!("{k:<14} = {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The output of `get -o json`: path, data (UTF-8, lossy), data as base64, and Stat.
pub fn data_json(path: &str, data: &[u8], stat: &Stat) -> Value {
    json!({
        "path": path,
        "data": String::from_utf8_lossy(data),
        "data_base64": base64(data),
        "stat": stat_json(stat),
    })
}

/// Header of `ls -l`.
pub const LS_LONG_HEADER: &str = "VERSION  LENGTH  CHILDREN  MTIME                     NAME";

/// One row of `ls -l`: version, data length, number of children, mtime, name.
pub fn ls_long_row(name: &str, stat: &Stat) -> String {
    format!(
        "{:>7}  {:>6}  {:>8}  {:<24}  {}",
        stat.version,
        stat.data_length,
        stat.num_children,
        format_time_ms(stat.mtime),
        name
    )
}

/// One `ls` entry as JSON.
pub fn ls_json(path: &str, name: &str, stat: Option<&Stat>) -> Value {
    let mut v = json!({ "path": path, "name": name });
    if let (Some(stat), Some(obj)) = (stat, v.as_object_mut()) {
        obj.insert("stat".to_string(), stat_json(stat));
    }
    v
}

/// The full path of `name` under `parent`.
pub fn join_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The last component of a path (`/` for the root).
pub fn base_name(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => name,
        _ => path,
    }
}

/// One watch event as a line: `zxid TYPE path`.
pub fn event_line(event: &WatchEvent) -> String {
    format!(
        "{} {} {}",
        event.zxid,
        event_type_name(event.r#type),
        event.path
    )
}

/// One watch event as JSON.
pub fn event_json(watch_id: u64, event: &WatchEvent) -> Value {
    json!({
        "watch_id": watch_id,
        "zxid": event.zxid,
        "type": event_type_name(event.r#type),
        "path": event.path,
    })
}

/// A session as JSON.
pub fn session_json(s: &SessionInfo) -> Value {
    json!({
        "session_id": s.session_id,
        "session_id_hex": session_id(s.session_id),
        "timeout_ms": s.timeout_ms,
        "ephemerals": s.ephemerals,
        "created_zxid": s.created_zxid,
        "created_ms": s.created_ms,
    })
}

/// Header of `session ls`.
pub const SESSION_HEADER: &str =
    "SESSION             TIMEOUT_MS  EPHEMERALS  CREATED_ZXID  CREATED";

/// One row of `session ls`.
pub fn session_row(s: &SessionInfo) -> String {
    format!(
        "{:<18}  {:>10}  {:>10}  {:>12}  {}",
        session_id(s.session_id),
        s.timeout_ms,
        s.ephemerals.len(),
        s.created_zxid,
        format_time_ms(s.created_ms)
    )
}

/// A session's details as `name = value` lines, then its ephemerals.
pub fn session_table(s: &SessionInfo) -> String {
    let mut out = format!(
        "session      = {}\ntimeout_ms   = {}\ncreated_zxid = {}\ncreated      = {}\nephemerals   = {}",
        session_id(s.session_id),
        s.timeout_ms,
        s.created_zxid,
        format_time_ms(s.created_ms),
        s.ephemerals.len()
    );
    for e in &s.ephemerals {
        out.push_str("\n  ");
        out.push_str(e);
    }
    out
}

/// A member as JSON.
pub fn member_json(m: &Member) -> Value {
    json!({
        "id": m.id,
        "peer_addr": m.peer_addr,
        "client_addr": m.client_addr,
        "voter": m.voter,
    })
}

/// Header of `members`.
pub const MEMBER_HEADER: &str = "ID    VOTER  CLIENT_ADDR            PEER_ADDR";

/// One row of `members`.
pub fn member_row(m: &Member) -> String {
    format!(
        "{:<4}  {:<5}  {:<21}  {}",
        m.id,
        if m.voter { "yes" } else { "no" },
        m.client_addr,
        m.peer_addr
    )
}

/// One member's status as JSON, tagged with the endpoint asked.
pub fn status_json(endpoint: &str, s: &StatusResponse) -> Value {
    json!({
        "endpoint": endpoint,
        "member_id": s.member_id,
        "role": role_name(s.role),
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_log_index": s.last_log_index,
        "snapshot_index": s.snapshot_index,
        "last_zxid": s.last_zxid,
        "sessions": s.sessions,
        "watches": s.watches,
        "znodes": s.znodes,
        "db_size_bytes": s.db_size_bytes,
        "state_hash": s.state_hash,
        "state_hash_index": s.state_hash_index,
        "term_changes": s.term_changes,
        "fast_elections": s.fast_elections,
        "leaders_found_gone": s.leaders_found_gone,
        "alarms": s.alarms.iter().map(|a| json!({
            "kind": a.kind,
            "member_id": a.member_id,
            "reason": a.reason,
        })).collect::<Vec<_>>(),
        "version": s.version,
        "members": s.members.iter().map(member_json).collect::<Vec<_>>(),
    })
}

/// One alarm, under the status table.
pub fn alarm_line(a: &Alarm) -> String {
    format!(
        "ALARM {} raised by member {}: {} (writes that add data are refused)",
        a.kind, a.member_id, a.reason
    )
}

/// A failed status as JSON.
pub fn status_error_json(endpoint: &str, error: &str) -> Value {
    json!({ "endpoint": endpoint, "error": error })
}

/// Header of `status`.
pub const STATUS_HEADER: &str = "ENDPOINT               MEMBER  ROLE       LEADER  TERM    TERM_CHG  COMMIT      APPLIED     LAST_ZXID   SESSIONS  WATCHES  ZNODES     DB_SIZE";

/// One row of `status`.
pub fn status_row(endpoint: &str, s: &StatusResponse) -> String {
    format!(
        "{:<21}  {:<6}  {:<9}  {:<6}  {:<6}  {:<8}  {:<10}  {:<10}  {:<10}  {:<8}  {:<7}  {:<9}  {}",
        endpoint,
        s.member_id,
        role_name(s.role),
        s.leader_id,
        s.term,
        s.term_changes,
        s.commit_index,
        s.applied_index,
        s.last_zxid,
        s.sessions,
        s.watches,
        s.znodes,
        human_bytes(s.db_size_bytes)
    )
}

/// A failed row of `status`.
pub fn status_error_row(endpoint: &str, error: &str) -> String {
    format!("{endpoint:<21}  error: {error}")
}

/// Bytes with a binary unit (`512 B`, `1.5 KiB`, `3.0 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The endpoint without its `http://` or `https://` scheme, for display.
pub fn display_endpoint(uri: &str) -> &str {
    crate::client::without_scheme(uri)
}

/// One endpoint's write-path stages as JSON.
pub fn stages_json(endpoint: &str, s: &crate::proto::v1::StagesResponse) -> Value {
    json!({
        "endpoint": endpoint,
        "member_id": s.header.as_ref().map_or(0, |h| h.member_id),
        "window_ms": s.window_ms,
        "stages": s.stages.iter().map(|st| json!({
            "name": st.name, "unit": st.unit, "count": st.count, "mean": st.mean,
            "p50": st.p50, "p99": st.p99, "max": st.max,
        })).collect::<Vec<_>>(),
    })
}

/// One endpoint's write-path stages as table lines (stages without samples left out).
pub fn stages_table(endpoint: &str, s: &crate::proto::v1::StagesResponse) -> Vec<String> {
    let member = s.header.as_ref().map_or(0, |h| h.member_id);
    let mut lines = vec![
        format!(
            "{endpoint} (member {member}), over {:.1} s",
            s.window_ms as f64 / 1000.0
        ),
        format!(
            "  {:<26} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "STAGE", "UNIT", "COUNT", "MEAN", "P50", "P99", "MAX"
        ),
    ];
    for st in s.stages.iter().filter(|st| st.count > 0) {
        lines.push(format!(
            "  {:<26} {:>5} {:>10} {:>10.1} {:>10} {:>10} {:>10}",
            st.name, st.unit, st.count, st.mean, st.p50, st.p99, st.max
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn formats_times() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            format_time_ms(1_709_294_400_000),
            "2024-03-01T12:00:00.000Z"
        );
        assert_eq!(format_time_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_time_ms(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn parses_session_ids() {
        assert_eq!(parse_session_id("42"), Ok(42));
        assert_eq!(parse_session_id("0x2a"), Ok(42));
        assert_eq!(parse_session_id("0X2A"), Ok(42));
        assert!(parse_session_id("0").is_err());
        assert!(parse_session_id("x").is_err());
        assert!(parse_session_id("-1").is_err());
        assert_eq!(session_id(42), "0x2a");
    }

    #[test]
    fn paths() {
        assert_eq!(join_path("/", "a"), "/a");
        assert_eq!(join_path("/a", "b"), "/a/b");
        assert_eq!(base_name("/a/b"), "b");
        assert_eq!(base_name("/a"), "a");
        assert_eq!(base_name("/"), "/");
    }

    #[test]
    fn json_outputs_are_single_line_objects() {
        let stat = Stat {
            czxid: 3,
            mzxid: 4,
            version: 1,
            data_length: 2,
            mode: CreateMode::Ephemeral as i32,
            ephemeral_owner: 9,
            ..Stat::default()
        };
        let v = data_json("/a", &[0x68, 0xff], &stat);
        let line = v.to_string();
        assert!(!line.contains('\n'));
        let back: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        assert_eq!(back["path"], "/a");
        assert_eq!(back["data"], "h\u{fffd}");
        assert_eq!(back["data_base64"], "aP8=");
        assert_eq!(back["stat"]["mode"], "EPHEMERAL");
        assert_eq!(back["stat"]["ephemeral_owner"], 9);
        assert_eq!(back["stat"]["version"], 1);

        let e = WatchEvent {
            r#type: EventType::DataChanged as i32,
            path: "/a".into(),
            zxid: 17,
        };
        assert_eq!(event_line(&e), "17 DATA_CHANGED /a");
        assert_eq!(
            event_json(5, &e),
            json!({"watch_id": 5, "zxid": 17, "type": "DATA_CHANGED", "path": "/a"})
        );
        let l = ls_json("/a/b", "b", None);
        assert!(l.get("stat").is_none());
        let l = ls_json("/a/b", "b", Some(&stat));
        assert_eq!(l["stat"]["czxid"], 3);
    }

    #[test]
    fn tables() {
        let stat = Stat {
            version: 3,
            data_length: 10,
            num_children: 2,
            mtime: 0,
            ttl_ms: 500,
            mode: CreateMode::PersistentWithTtl as i32,
            ..Stat::default()
        };
        let t = stat_table(&stat);
        assert!(t.contains("version        = 3"));
        assert!(t.contains("mode           = PERSISTENT_WITH_TTL"));
        assert!(t.contains("ttl_ms         = 500"));
        let row = ls_long_row("child", &stat);
        assert!(row.ends_with("child"));
        assert!(row.contains("1970-01-01T00:00:00.000Z"));
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(role_name(Role::Leader as i32), "LEADER");
        assert_eq!(role_name(0), "UNKNOWN");
        assert_eq!(mode_name(99), "99");
    }
}
