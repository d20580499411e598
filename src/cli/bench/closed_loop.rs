//! The closed loops of `put`, `get` and `create-delete`: each client one request at a time
//! on its connection.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map};
use tokio::time::Instant;

use super::args::{BenchArgs, Workload};
use super::fill::{create_keys, key_path, value_of};
use super::pool::{connect_pool, ensure_path, pause_after_error, timed};
use super::report::{ms, Report, Tally, Window};
use crate::cli::CliError;
use crate::client::{ClientOptions, CreateOptions, ReadOptions};

/// put, get and create-delete.
pub(super) async fn closed_loop(
    endpoints: &[String],
    base: &ClientOptions,
    args: &BenchArgs,
) -> Result<Report, CliError> {
    let op_timeout = Duration::from_millis(args.op_timeout);
    let conns = args.conns();
    let pool = connect_pool(endpoints, base, conns, args).await?;
    match args.workload {
        Workload::Put | Workload::Get => create_keys(&pool, args).await?,
        _ => ensure_path(&pool[0], "/bench/cd").await?,
    }
    let run_id: u32 = rand::random();
    let start = Instant::now();
    let record_start = start + Duration::from_secs_f64(args.warmup);
    let window = Window {
        record_start,
        end: record_start + Duration::from_secs_f64(args.seconds()),
    };
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let client = pool[(i % conns) as usize].clone();
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut rng = StdRng::from_entropy();
            let value = value_of(args.value_size, i);
            let read = if args.serializable {
                ReadOptions::serializable()
            } else {
                ReadOptions::linearizable()
            };
            let mut seq = 0u64;
            while Instant::now() < window.end {
                let began = Instant::now();
                let result = match args.workload {
                    Workload::Put => {
                        let key = key_path(rng.gen_range(0..args.key_space));
                        timed(op_timeout, client.set_data(&key, value.clone(), -1))
                            .await
                            .map(drop)
                    }
                    Workload::Get => {
                        let key = key_path(rng.gen_range(0..args.key_space));
                        timed(op_timeout, client.get_data_with(&key, read))
                            .await
                            .map(drop)
                    }
                    _ => {
                        seq += 1;
                        let path = format!("/bench/cd/{run_id:08x}-{i}-{seq}");
                        match timed(
                            op_timeout,
                            client.create(&path, value.clone(), CreateOptions::persistent()),
                        )
                        .await
                        {
                            Ok(_) => timed(op_timeout, client.delete(&path, -1)).await.map(drop),
                            Err(e) => Err(e),
                        }
                    }
                };
                let failed = result.is_err();
                tally.record(&window, began, &result);
                if failed {
                    pause_after_error(&window).await;
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            Err(e) => total.error(&format!("CLIENT_TASK_FAILED: {e}")),
        }
    }
    let mut extras = Map::new();
    extras.insert("value_size".into(), json!(args.value_size));
    extras.insert("endpoints".into(), json!(endpoints.len()));
    extras.insert("warmup_seconds".into(), json!(args.warmup));
    extras.insert("op_timeout_ms".into(), json!(args.op_timeout));
    if args.workload != Workload::CreateDelete {
        extras.insert("key_space".into(), json!(args.key_space));
    }
    if args.workload == Workload::Get {
        let consistency = if args.serializable {
            "serializable"
        } else {
            "linearizable"
        };
        extras.insert("consistency".into(), json!(consistency));
    }
    if !total.hist.is_empty() {
        extras.insert(
            "mean_ms".into(),
            json!(ms(total.hist.mean().round() as u64)),
        );
    }
    Ok(Report {
        workload: args.workload.name(),
        clients: args.clients,
        conns,
        seconds: args.seconds(),
        ops: total.ops,
        errors: total.errors,
        hist: total.hist,
        error_kinds: total.error_kinds,
        extras,
    })
}
