//! The keys put and get use (`/bench/kv/k<i>`): their values, creating the missing ones in
//! Multi batches, and the `fill` workload that only creates them, timed.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Map};
use tokio::time::Instant;

use super::args::BenchArgs;
use super::pool::{connect_pool, ensure_path, pause_after_error, timed};
use super::report::{Report, Tally, Window};
use crate::cli::CliError;
use crate::client::{ChildrenOptions, Client, ClientError, ClientOptions, CreateOptions, MultiOps};

pub(super) fn key_path(i: u64) -> String {
    format!("/bench/kv/k{i}")
}

pub(super) fn value_of(size: usize, seed: u64) -> Vec<u8> {
    let tag = seed.to_string().into_bytes();
    (0..size)
        .map(|i| tag.get(i).copied().unwrap_or(b'x'))
        .collect()
}

/// The keys of `/bench/kv/k0..k{key_space}` that do not exist yet (creating `/bench/kv`).
async fn missing_keys(client: &Client, key_space: u64) -> Result<Vec<u64>, CliError> {
    let setup = client.with_timeout(Duration::from_secs(60));
    ensure_path(&setup, "/bench/kv").await?;
    let existing: std::collections::HashSet<String> = setup
        .get_all_children_with("/bench/kv", ChildrenOptions::default())
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    Ok((0..key_space)
        .filter(|i| !existing.contains(&format!("k{i}")))
        .collect())
}

/// Creates per Multi batch: about 512 KiB of values, at most 100.
fn keys_per_batch(value_size: usize) -> usize {
    (512 * 1024 / value_size.max(1)).clamp(1, 100)
}

/// The Multi that creates `keys`.
fn create_batch(keys: &[u64], value: &[u8], create: &CreateOptions) -> MultiOps {
    keys.iter().fold(MultiOps::new(), |ops, &i| {
        ops.create(&key_path(i), value.to_vec(), create.clone())
    })
}

/// Creates the missing keys `/bench/kv/k0..k{key_space}`, in Multi batches, several at once.
pub(super) async fn create_keys(pool: &[Client], args: &BenchArgs) -> Result<(), CliError> {
    let missing = missing_keys(&pool[0], args.key_space).await?;
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("creating {} keys under /bench/kv ...", missing.len());
    let value = value_of(args.value_size, 0);
    let create = CreateOptions::persistent().with_acl(crate::cli::commands::parse_acl(&args.acl)?);
    let batches: Vec<&[u64]> = missing.chunks(keys_per_batch(args.value_size)).collect();
    let concurrency = usize::try_from(args.clients).unwrap_or(16).clamp(1, 64);
    let mut results = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(n, keys)| {
            let client = pool[n % pool.len()].with_timeout(Duration::from_secs(60));
            let value = value.clone();
            let create = create.clone();
            async move {
                if client
                    .multi(create_batch(keys, &value, &create))
                    .await?
                    .succeeded
                {
                    return Ok::<(), ClientError>(());
                }
                // Someone created some of them meanwhile: one at a time, tolerating those.
                for &i in keys {
                    match client
                        .create(&key_path(i), value.clone(), create.clone())
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.is(crate::client::Reason::NodeExists) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// fill: creates the missing keys with `--clients` batches in flight, each sent again after
/// an error until it succeeds or the deadline (`--seconds`) passes.
pub(super) async fn fill(
    endpoints: &[String],
    base: &ClientOptions,
    args: &BenchArgs,
) -> Result<Report, CliError> {
    let op_timeout = Duration::from_millis(args.op_timeout);
    let conns = args.conns();
    let pool = connect_pool(endpoints, base, conns, args).await?;
    let missing = missing_keys(&pool[0], args.key_space).await?;
    let per_batch = keys_per_batch(args.value_size);
    let value = value_of(args.value_size, 0);
    let create = CreateOptions::persistent().with_acl(crate::cli::commands::parse_acl(&args.acl)?);
    let start = Instant::now();
    // Without --seconds, a deadline that never comes (a year).
    let limit = args.seconds.unwrap_or(365.0 * 86_400.0);
    let window = Window {
        record_start: start,
        end: start + Duration::from_secs_f64(limit),
    };
    let concurrency = usize::try_from(args.clients).unwrap_or(16).max(1);
    let mut results = futures::stream::iter(missing.chunks(per_batch).enumerate())
        .map(|(n, keys)| {
            let client = pool[n % pool.len()].clone();
            let (value, create) = (&value, &create);
            async move { fill_batch(&client, keys, value, create, op_timeout, &window).await }
        })
        .buffer_unordered(concurrency);
    let mut total = Tally::new();
    let mut created = 0u64;
    while let Some((tally, done)) = results.next().await {
        total.merge(tally);
        created += done;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut extras = Map::new();
    extras.insert("value_size".into(), json!(args.value_size));
    extras.insert("endpoints".into(), json!(endpoints.len()));
    extras.insert("op_timeout_ms".into(), json!(args.op_timeout));
    extras.insert("key_space".into(), json!(args.key_space));
    extras.insert(
        "keys_existing_before".into(),
        json!(args.key_space - missing.len() as u64),
    );
    extras.insert("keys_per_batch".into(), json!(per_batch));
    extras.insert("batches".into(), json!(total.hist.len()));
    extras.insert("keys_missing".into(), json!(missing.len() as u64 - created));
    Ok(Report {
        workload: args.workload.name(),
        clients: args.clients,
        conns,
        seconds: (elapsed * 1000.0).round() / 1000.0,
        ops: created,
        errors: total.errors,
        hist: total.hist,
        error_kinds: total.error_kinds,
        extras,
    })
}

/// One batch of the fill: its Multi, sent until it succeeds or `window.end` passes. A Multi
/// that fails because some keys exist (an earlier attempt whose answer was lost) is followed
/// by one create per key, tolerating those that exist. Returns the batch's tally and the keys
/// it put in place (all of them, or none if the deadline passed).
async fn fill_batch(
    client: &Client,
    keys: &[u64],
    value: &[u8],
    create: &CreateOptions,
    op_timeout: Duration,
    window: &Window,
) -> (Tally, u64) {
    let mut tally = Tally::new();
    let mut one_by_one = false;
    while Instant::now() < window.end {
        let began = Instant::now();
        let result = if one_by_one {
            create_each(client, keys, value, create, op_timeout).await
        } else {
            match timed(op_timeout, client.multi(create_batch(keys, value, create))).await {
                Ok(r) if r.succeeded => Ok(()),
                Ok(_) => {
                    one_by_one = true;
                    continue;
                }
                Err(kind) => Err(kind),
            }
        };
        let failed = result.is_err();
        tally.record(window, began, &result);
        if !failed {
            return (tally, keys.len() as u64);
        }
        pause_after_error(window).await;
    }
    (tally, 0)
}

/// Creates each key, tolerating those that exist; the first error ends it.
async fn create_each(
    client: &Client,
    keys: &[u64],
    value: &[u8],
    create: &CreateOptions,
    op_timeout: Duration,
) -> Result<(), String> {
    for &i in keys {
        match timed(
            op_timeout,
            client.create(&key_path(i), value.to_vec(), create.clone()),
        )
        .await
        {
            Ok(_) => {}
            Err(kind) if kind == crate::client::Reason::NodeExists.as_str() => {}
            Err(kind) => return Err(kind),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_batches_hold_about_half_a_mebibyte_of_values() {
        assert_eq!(keys_per_batch(256), 100);
        assert_eq!(keys_per_batch(0), 100);
        assert_eq!(keys_per_batch(65_536), 8);
        assert_eq!(keys_per_batch(2 << 20), 1);
    }

    #[test]
    fn values_have_the_requested_size() {
        assert_eq!(value_of(0, 5).len(), 0);
        assert_eq!(value_of(3, 12345), b"123".to_vec());
        assert_eq!(value_of(5, 7), b"7xxxx".to_vec());
    }
}
