use baton::tree::{Command, CreateMode, Op, Request, State};
use bytes::Bytes;
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}
fn main() {
    let n: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(200_000);
    let r0 = rss();
    let mut st = State::new();
    let mk = |p: String| Request::Multi { ops: vec![Op::Create { path: p, data: Bytes::from(vec![7u8; 256]), mode: CreateMode::Persistent, session_id: 0, ttl_ms: 0, acl: Vec::new() }], single: true, caller: None };
    st.apply(1, &Command { time_ms: 1, requests: vec![mk("/bench".into())] });
    st.apply(2, &Command { time_ms: 1, requests: vec![mk("/bench/kv".into())] });
    let mut z = 3;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let reqs = chunk.iter().map(|i| mk(format!("/bench/kv/k{i}"))).collect();
        st.apply(z, &Command { time_ms: 1, requests: reqs });
        z += 1;
    }
    let r1 = rss();
    println!("{n} nodes: tree {} MB, {} B/node", (r1 - r0) / 1024, (r1 - r0) * 1024 / n as u64);
}
