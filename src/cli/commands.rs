//! The node, watch, session and cluster commands of the CLI.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use serde_json::json;

use super::output::{self, Printer};
use super::{AclCommand, CliError, CreateArgs, LsArgs, RmArgs, SessionCommand, SetArgs, WatchArgs};
use crate::client::{
    Acl, AclId, ChildrenOptions, Client, ClientError, ClientOptions, CreateOptions, Reason,
    Session, SessionState, Stat, WatchKind,
};
use crate::tree::acl;

/// Data given on the command line, or stdin for `-`.
fn read_data(arg: Option<&str>) -> Result<Vec<u8>, CliError> {
    match arg {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::Other(format!("reading stdin: {e}")))?;
            Ok(buf)
        }
        Some(s) => Ok(s.as_bytes().to_vec()),
    }
}

fn no_node(path: &str) -> CliError {
    CliError::Other(format!("NO_NODE: no node: {path}"))
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, so a long-running command (watch, session open,
/// create --wait) ends cleanly and closes what it opened either way. A handler that cannot be
/// installed counts as a signal that never comes.
async fn ctrl_c() {
    let sigint = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let sigterm = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = sigint => {}
            _ = sigterm => {}
        }
    }
    #[cfg(not(unix))]
    sigint.await;
}

/// `create`.
pub async fn create(client: &Client, args: CreateArgs, out: &mut Printer) -> Result<(), CliError> {
    let data = read_data(args.data.as_deref())?;
    let mut own_session: Option<Session> = None;
    let session_id = match (args.ephemeral, args.session) {
        (false, _) => 0,
        (true, Some(id)) => id,
        (true, None) => {
            let session = client
                .open_session(Duration::from_millis(args.session_timeout))
                .await?;
            let id = session.id();
            own_session = Some(session);
            id
        }
    };
    let options = CreateOptions {
        mode: args.mode(),
        session_id,
        ttl_ms: args.ttl.unwrap_or(0),
        acl: parse_acl(&args.acl)?,
    };
    let (path, stat) = match client.create(&args.path, data, options).await {
        Ok(created) => created,
        Err(e) => {
            if let Some(session) = &own_session {
                let _ = session.close().await;
            }
            return Err(e.into());
        }
    };
    if out.json() {
        let mut v = json!({ "path": path, "stat": output::stat_json(&stat) });
        if session_id != 0 {
            v["session_id"] = json!(session_id);
            v["session_id_hex"] = json!(output::session_id(session_id));
        }
        out.value(&v)?;
    } else {
        out.line(&path)?;
    }
    let Some(session) = own_session else {
        return Ok(());
    };
    if args.wait {
        eprintln!(
            "holding {path} in session {}; Ctrl-C to delete it and exit",
            output::session_id(session.id())
        );
        tokio::select! {
            _ = ctrl_c() => {}
            state = session.lost() => {
                if let SessionState::Lost { reason } = state {
                    return Err(CliError::Other(format!("session lost: {reason}")));
                }
            }
        }
    }
    if let Err(e) = session.close().await {
        eprintln!(
            "warning: could not close session {} (the node goes when it expires): {e}",
            output::session_id(session.id())
        );
    }
    Ok(())
}

/// `get`.
pub async fn get(client: &Client, path: &str, out: &mut Printer) -> Result<(), CliError> {
    let (data, stat) = client.get_data(path).await?;
    if out.json() {
        out.value(&output::data_json(path, &data, &stat))?;
    } else {
        out.raw(&data)?;
        if std::io::stdout().is_terminal() && !data.is_empty() && !data.ends_with(b"\n") {
            out.raw(b"\n")?;
        }
    }
    Ok(())
}

/// `set`.
pub async fn set(client: &Client, args: SetArgs, out: &mut Printer) -> Result<(), CliError> {
    let data = read_data(Some(&args.data))?;
    let stat = client.set_data(&args.path, data, args.version).await?;
    if out.json() {
        out.value(&json!({ "path": args.path, "stat": output::stat_json(&stat) }))?;
    }
    Ok(())
}

/// `stat`.
pub async fn stat(client: &Client, path: &str, out: &mut Printer) -> Result<(), CliError> {
    let stat = client.exists(path).await?.ok_or_else(|| no_node(path))?;
    if out.json() {
        out.value(&json!({ "path": path, "stat": output::stat_json(&stat) }))?;
    } else {
        out.line(&output::stat_table(&stat))?;
    }
    Ok(())
}

/// `ls`.
pub async fn ls(client: &Client, args: LsArgs, out: &mut Printer) -> Result<(), CliError> {
    let options = if args.long {
        ChildrenOptions::with_stats()
    } else {
        ChildrenOptions::default()
    };
    if !args.recursive {
        let children = client.get_all_children_with(&args.path, options).await?;
        if args.long && !out.json() {
            out.line(output::LS_LONG_HEADER)?;
        }
        for child in children {
            let path = output::join_path(&args.path, &child.name);
            let stat = child.stat.as_ref();
            print_entry(out, args.long, &path, &child.name, &child.name, stat)?;
        }
        return Ok(());
    }

    // Depth-first, pre-order, children in byte order: the node itself comes first.
    let root_stat = if args.long {
        Some(
            client
                .exists(&args.path)
                .await?
                .ok_or_else(|| no_node(&args.path))?,
        )
    } else {
        None
    };
    if args.long && !out.json() {
        out.line(output::LS_LONG_HEADER)?;
    }
    let mut stack: Vec<(String, Option<Stat>)> = vec![(args.path.clone(), root_stat)];
    let mut is_root = true;
    while let Some((path, stat)) = stack.pop() {
        let children = match client.get_all_children_with(&path, options.clone()).await {
            Ok(c) => c,
            // Deleted while we walked: skip it, unless it is the root.
            Err(e) if !is_root && e.is(Reason::NoNode) => continue,
            Err(e) => return Err(e.into()),
        };
        is_root = false;
        let name = output::base_name(&path);
        print_entry(out, args.long, &path, name, &path, stat.as_ref())?;
        for child in children.into_iter().rev() {
            stack.push((output::join_path(&path, &child.name), child.stat));
        }
    }
    Ok(())
}

/// One `ls` entry; `display` is what the text format shows (name, or full path with -R).
fn print_entry(
    out: &mut Printer,
    long: bool,
    path: &str,
    name: &str,
    display: &str,
    stat: Option<&Stat>,
) -> Result<(), CliError> {
    if out.json() {
        out.value(&output::ls_json(path, name, stat))?;
    } else {
        match (long, stat) {
            (true, Some(stat)) => out.line(&output::ls_long_row(display, stat))?,
            _ => out.line(display)?,
        }
    }
    Ok(())
}

/// `rm`.
pub async fn rm(client: &Client, args: RmArgs, out: &mut Printer) -> Result<(), CliError> {
    let mut deleted = 0u64;
    if args.recursive {
        // Pre-order listing; deleting it in reverse removes every child before its parent.
        let mut order = Vec::new();
        let mut stack = vec![args.path.clone()];
        while let Some(path) = stack.pop() {
            let children = match client.get_all_children(&path).await {
                Ok(c) => c,
                Err(e) if path != args.path && e.is(Reason::NoNode) => continue,
                Err(e) => return Err(e.into()),
            };
            for name in children.into_iter().rev() {
                stack.push(output::join_path(&path, &name));
            }
            order.push(path);
        }
        for path in order.iter().skip(1).rev() {
            match client.delete(path, -1).await {
                Ok(_) => deleted += 1,
                Err(e) if e.is(Reason::NoNode) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    client.delete(&args.path, args.version).await?;
    deleted += 1;
    if out.json() {
        out.value(&json!({ "path": args.path, "deleted": deleted }))?;
    }
    Ok(())
}

/// `watch`: a persistent watch, resumed from the last seen zxid after transient failures.
pub async fn watch(client: &Client, args: WatchArgs, out: &mut Printer) -> Result<(), CliError> {
    let kind = if args.recursive {
        WatchKind::PersistentRecursive
    } else {
        WatchKind::Persistent
    };
    let mut resume_from = args.from;
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            _ = ctrl_c() => return Ok(()),
            r = watch_once(client, &args.path, kind, &mut resume_from, &mut backoff, out) => r,
        };
        match result {
            // A slow reader (RESOURCE_EXHAUSTED) can resume too: events are replayed.
            Err(CliError::Client(e))
                if e.is_retryable() || e.code() == tonic::Code::ResourceExhausted =>
            {
                eprintln!("watch interrupted ({e}); reconnecting");
                tokio::select! {
                    _ = ctrl_c() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
}

/// One watch stream: adds the watch (resuming after `resume_from` if set) and prints events
/// until the stream fails. Keeps `resume_from` at the last printed zxid.
async fn watch_once(
    client: &Client,
    path: &str,
    kind: WatchKind,
    resume_from: &mut Option<u64>,
    backoff: &mut Duration,
    out: &mut Printer,
) -> Result<(), CliError> {
    let (mut watcher, _, added) = client.watch_from(path, kind, *resume_from).await?;
    eprintln!(
        "watching {path} ({}) on {} {}",
        kind.as_str_name(),
        output::display_endpoint(watcher.endpoint()),
        match resume_from {
            Some(z) => format!("after zxid {z}"),
            None => format!("from zxid {}", added.zxid),
        }
    );
    if resume_from.is_none() {
        *resume_from = Some(added.zxid);
    }
    *backoff = Duration::from_millis(100);
    loop {
        match watcher.next_event().await? {
            Some((id, event)) => {
                if out.json() {
                    out.value(&output::event_json(id, &event))?;
                } else {
                    out.line(&output::event_line(&event))?;
                }
                *resume_from = Some(event.zxid);
            }
            None => return Err(ClientError::WatchClosed.into()),
        }
    }
}

/// `sync`.
pub async fn sync(client: &Client, path: &str, out: &mut Printer) -> Result<(), CliError> {
    let header = client.sync(path).await?;
    if out.json() {
        out.value(&json!({
            "path": path,
            "member_id": header.member_id,
            "zxid": header.zxid,
        }))?;
    } else {
        out.line(&format!(
            "member {} applied zxid {}",
            header.member_id, header.zxid
        ))?;
    }
    Ok(())
}

/// `cluster watches`: every page of the member's watches, listed or summarised.
async fn watches(
    client: &Client,
    prefix: &str,
    by: super::WatchesBy,
    out: &mut Printer,
) -> Result<(), CliError> {
    use std::collections::BTreeMap;
    let mut rows = Vec::new();
    let mut after = 0;
    let first = loop {
        let page = client.watches(prefix, 1000, after).await?;
        after = page.watches.last().map_or(after, |w| w.watch_id);
        let more = page.more;
        rows.extend(page.watches.iter().cloned());
        if !more {
            break page;
        }
    };
    let member = first.header.as_ref().map_or(0, |h| h.member_id);
    let key = |w: &crate::client::WatchInfo| match by {
        super::WatchesBy::Stream => format!("{} {}", w.stream_id, w.client),
        super::WatchesBy::Path => w.path.clone(),
        super::WatchesBy::None => String::new(),
    };
    if by == super::WatchesBy::None {
        if out.json() {
            for w in &rows {
                out.value(&json!({
                    "member_id": member, "watch_id": w.watch_id, "stream_id": w.stream_id,
                    "client": w.client, "path": w.path, "kind": w.kind,
                }))?;
            }
        } else {
            out.line(&format!(
                "{:>10} {:>8} {:<22} {:<10} PATH",
                "WATCH", "STREAM", "CLIENT", "KIND"
            ))?;
            for w in &rows {
                out.line(&format!(
                    "{:>10} {:>8} {:<22} {:<10} {}",
                    w.watch_id, w.stream_id, w.client, w.kind, w.path
                ))?;
            }
        }
        return Ok(());
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for w in &rows {
        *counts.entry(key(w)).or_insert(0) += 1;
    }
    if out.json() {
        out.value(&json!({
            "member_id": member,
            "total": first.total,
            "streams": first.streams,
            "by_kind": first.by_kind,
            "listed": rows.len(),
            "counts": counts,
        }))?;
    } else {
        let kinds: Vec<String> = first
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.line(&format!(
            "member {member}: {} watches on {} streams ({})",
            first.total,
            first.streams,
            kinds.join(", ")
        ))?;
        let what = if by == super::WatchesBy::Path {
            "PATH"
        } else {
            "STREAM CLIENT"
        };
        out.line(&format!("{:>8}  {what}", "WATCHES"))?;
        for (k, n) in &counts {
            out.line(&format!("{n:>8}  {k}"))?;
        }
    }
    Ok(())
}

/// `probe`: one GET of /readyz or /livez, verbose.
pub async fn probe(
    args: &super::ProbeArgs,
    timeout: Duration,
    out: &mut Printer,
) -> Result<(), CliError> {
    let path = if args.live {
        "/livez?verbose"
    } else {
        "/readyz?verbose"
    };
    let (code, body) = crate::ops::http::get(&args.addr, path, timeout)
        .await
        .map_err(|e| CliError::Other(format!("UNAVAILABLE: {}{path}: {e}", args.addr)))?;
    if out.json() {
        out.value(&json!({
            "addr": args.addr,
            "probe": if args.live { "livez" } else { "readyz" },
            "ok": code == 200,
            "status": code,
            "checks": body.lines().collect::<Vec<_>>(),
        }))?;
    } else {
        for line in body.lines() {
            out.line(line)?;
        }
    }
    if code == 200 {
        Ok(())
    } else {
        Err(CliError::Exit(1))
    }
}

/// `session open|ls|get`.
pub async fn session(
    client: &Client,
    command: SessionCommand,
    out: &mut Printer,
) -> Result<(), CliError> {
    match command {
        SessionCommand::Open { timeout } => {
            let session = client.open_session(Duration::from_millis(timeout)).await?;
            let timeout_ms = session.timeout().as_millis();
            if out.json() {
                out.value(&json!({
                    "session_id": session.id(),
                    "session_id_hex": output::session_id(session.id()),
                    "secret_hex": output::hex(session.secret()),
                    "secret_base64": output::base64(session.secret()),
                    "timeout_ms": u64::try_from(timeout_ms).unwrap_or(u64::MAX),
                }))?;
            } else {
                out.line(&format!(
                    "session_id  {}\nsecret      {}\ntimeout_ms  {timeout_ms}",
                    output::session_id(session.id()),
                    output::hex(session.secret())
                ))?;
            }
            eprintln!("keeping the session alive; Ctrl-C to close it");
            tokio::select! {
                _ = ctrl_c() => {
                    session.close().await?;
                    Ok(())
                }
                state = session.lost() => match state {
                    SessionState::Lost { reason } => {
                        Err(CliError::Other(format!("session lost: {reason}")))
                    }
                    _ => Ok(()),
                },
            }
        }
        SessionCommand::Ls => {
            let sessions = client.list_sessions().await?;
            if out.json() {
                for s in &sessions {
                    out.value(&output::session_json(s))?;
                }
            } else {
                out.line(output::SESSION_HEADER)?;
                for s in &sessions {
                    out.line(&output::session_row(s))?;
                }
            }
            Ok(())
        }
        SessionCommand::Get { id } => {
            let s = client.get_session(id).await?;
            if out.json() {
                out.value(&output::session_json(&s))?;
            } else {
                out.line(&output::session_table(&s))?;
            }
            Ok(())
        }
    }
}

/// `status`: asks every endpoint separately, so one dead member does not hide the others.
pub async fn status(
    endpoints: &[String],
    options: ClientOptions,
    out: &mut Printer,
) -> Result<(), CliError> {
    let options = ClientOptions {
        connect_timeout: options.connect_timeout.min(options.timeout),
        ..options
    };
    let asks = endpoints.iter().map(|endpoint| {
        let options = options.clone();
        async move {
            let result = async {
                let client = Client::connect_with([endpoint], options).await?;
                client.status().await
            }
            .await;
            (endpoint.clone(), result)
        }
    });
    let results = futures::future::join_all(asks).await;
    if !out.json() {
        out.line(output::STATUS_HEADER)?;
    }
    let mut failed = 0;
    for (endpoint, result) in &results {
        match result {
            Ok(s) => {
                if out.json() {
                    out.value(&output::status_json(endpoint, s))?;
                } else {
                    out.line(&output::status_row(endpoint, s))?;
                }
            }
            Err(e) => {
                failed += 1;
                if out.json() {
                    out.value(&output::status_error_json(endpoint, &e.to_string()))?;
                } else {
                    out.line(&output::status_error_row(endpoint, &e.to_string()))?;
                }
            }
        }
    }
    // Alarms are replicated: show those of the first member that answered, once.
    if !out.json() {
        if let Some(s) = results.iter().find_map(|(_, r)| r.as_ref().ok()) {
            for a in &s.alarms {
                out.line(&output::alarm_line(a))?;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Other(format!(
            "UNAVAILABLE: {failed} of {} endpoints did not answer",
            results.len()
        )));
    }
    Ok(())
}

/// Each endpoint's write-path stages (`cluster stages`), read (and reset) concurrently.
///
/// # Errors
/// An endpoint that does not answer.
pub async fn stages(
    endpoints: &[String],
    options: ClientOptions,
    reset: bool,
    out: &mut Printer,
) -> Result<(), CliError> {
    let asks = endpoints.iter().map(|endpoint| {
        let options = options.clone();
        async move {
            let result = async {
                let client = Client::connect_with([endpoint], options).await?;
                client.stages(reset).await
            }
            .await;
            (endpoint.clone(), result)
        }
    });
    let mut failed = Vec::new();
    for (endpoint, result) in futures::future::join_all(asks).await {
        match result {
            Ok(s) => {
                if out.json() {
                    out.value(&output::stages_json(&endpoint, &s))?;
                } else {
                    for line in output::stages_table(&endpoint, &s) {
                        out.line(&line)?;
                    }
                }
            }
            Err(e) => failed.push(format!("{endpoint}: {e}")),
        }
    }
    if !failed.is_empty() {
        return Err(CliError::Other(format!(
            "UNAVAILABLE: {}",
            failed.join("; ")
        )));
    }
    Ok(())
}

/// `members`.
pub async fn members(client: &Client, out: &mut Printer) -> Result<(), CliError> {
    let members = client.members().await?;
    if out.json() {
        for m in &members {
            out.value(&output::member_json(m))?;
        }
    } else {
        out.line(output::MEMBER_HEADER)?;
        for m in &members {
            out.line(&output::member_row(m))?;
        }
    }
    Ok(())
}

/// `cluster add|promote|remove|snapshot` (status, members and stages are handled elsewhere).
pub async fn cluster(
    client: &Client,
    cmd: super::ClusterCommand,
    out: &mut Printer,
) -> Result<(), CliError> {
    use super::ClusterCommand as C;
    let members = match cmd {
        C::Add {
            id,
            peer_addr,
            client_addr,
        } => client.add_member(id, &peer_addr, &client_addr).await?,
        C::Promote { id } => client.promote_member(id).await?,
        C::Remove { id } => client.remove_member(id).await?,
        C::Snapshot => {
            let index = client.snapshot().await?;
            if out.json() {
                out.value(&serde_json::json!({ "snapshot_index": index }))?;
            } else {
                out.line(&format!("snapshot at index {index}"))?;
            }
            return Ok(());
        }
        C::Watches { prefix, by } => return watches(client, &prefix, by, out).await,
        C::TransferLeader { id } => {
            let (leader, term) = client.transfer_leader(id).await?;
            if out.json() {
                out.value(&serde_json::json!({ "leader_id": leader, "term": term }))?;
            } else {
                out.line(&format!("member {leader} leads in term {term}"))?;
            }
            return Ok(());
        }
        C::LogLevel { filter } => {
            let previous = client.set_log_level(&filter).await?;
            if out.json() {
                out.value(&serde_json::json!({ "filter": filter, "previous": previous }))?;
            } else {
                out.line(&format!("log filter now {filter:?} (was {previous:?})"))?;
            }
            return Ok(());
        }
        C::Status | C::Members | C::Stages { .. } => return members(client, out).await,
    };
    if out.json() {
        for m in &members {
            out.value(&output::member_json(m))?;
        }
    } else {
        out.line(output::MEMBER_HEADER)?;
        for m in &members {
            out.line(&output::member_row(m))?;
        }
    }
    Ok(())
}

/// Parses ACL entries `SCHEME:ID:PERMS` (the id may hold colons, as digest ids do).
///
/// # Errors
/// `BAD_ARGUMENTS` naming the bad entry.
pub fn parse_acl(entries: &[String]) -> Result<Vec<Acl>, CliError> {
    entries
        .iter()
        .map(|e| {
            let bad = |why: &str| CliError::Other(format!("BAD_ARGUMENTS: ACL entry {e:?}: {why}"));
            let (scheme, rest) = e
                .split_once(':')
                .ok_or_else(|| bad("expected SCHEME:ID:PERMS"))?;
            let (id, perms) = rest
                .rsplit_once(':')
                .ok_or_else(|| bad("expected SCHEME:ID:PERMS"))?;
            let perms = acl::parse_letters(perms).map_err(|x| bad(&x.to_string()))?;
            Ok(Acl {
                perms,
                id: AclId::new(scheme, id),
            })
        })
        .collect()
}

/// `baton acl get|set`.
pub async fn acl(client: &Client, cmd: AclCommand, out: &mut Printer) -> Result<(), CliError> {
    match cmd {
        AclCommand::Get { path } => {
            let (list, stat) = client.get_acl(&path).await?;
            if out.json() {
                let entries: Vec<serde_json::Value> = list
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "scheme": a.id.scheme,
                            "id": a.id.id,
                            "perms": acl::perms_letters(a.perms),
                        })
                    })
                    .collect();
                out.value(&serde_json::json!({ "acl": entries, "aversion": stat.aversion }))?;
            } else {
                for a in &list {
                    out.line(&format!("{}:{}", a.id, acl::perms_letters(a.perms)))?;
                }
            }
        }
        AclCommand::Set {
            path,
            entries,
            version,
        } => {
            let list = parse_acl(&entries)?;
            let stat = client.set_acl(&path, &list, version).await?;
            if out.json() {
                out.value(&serde_json::json!({ "aversion": stat.aversion }))?;
            } else {
                out.line(&format!("aversion {}", stat.aversion))?;
            }
        }
    }
    Ok(())
}

/// `baton auth whoami`.
pub async fn whoami(client: &Client, out: &mut Printer) -> Result<(), CliError> {
    let me = client.who_am_i().await?;
    if out.json() {
        out.value(&serde_json::json!({
            "member_id": me.member_id,
            "ids": me.ids,
            "superuser": me.superuser,
            "secure": me.secure,
        }))?;
    } else if me.ids.is_empty() && !me.superuser {
        out.line("anonymous")?;
    } else {
        for id in &me.ids {
            out.line(id)?;
        }
        if me.superuser {
            out.line("(super principal)")?;
        }
    }
    Ok(())
}

/// `baton auth digest USER:PASSWORD`: computed here, nothing sent.
pub fn digest(credentials: &str, out: &mut Printer) -> Result<(), CliError> {
    let (user, password) = credentials
        .split_once(':')
        .filter(|(u, _)| !u.is_empty())
        .ok_or_else(|| CliError::Other("BAD_ARGUMENTS: expected USER:PASSWORD".into()))?;
    let id = acl::digest_id(user, password);
    if out.json() {
        out.value(&serde_json::json!({ "id": id }))?;
    } else {
        out.line(&id)?;
    }
    Ok(())
}
