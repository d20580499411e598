//! Logging: `tracing-subscriber` with `RUST_LOG` filtering (default `info`) and a pretty or
//! JSON format. The filter can be changed while the process runs ([`set_filter`], behind
//! `Cluster.SetLogLevel` and `baton cluster log-level`).

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogFormat;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,openraft=warn,sled=warn,h2=warn,tower=warn";

struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

static FILTER: OnceLock<Filter> = OnceLock::new();

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let text = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, text) = match EnvFilter::try_new(&text) {
        Ok(f) if !text.is_empty() => (f, text),
        _ => (EnvFilter::new(DEFAULT_FILTER), DEFAULT_FILTER.to_string()),
    };
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => Registry::default().with(layer).with(fmt.json()).try_init(),
        LogFormat::Pretty => Registry::default().with(layer).with(fmt).try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(Filter {
            handle,
            current: Mutex::new(text),
        });
    }
}

/// Why the filter could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Not a valid `RUST_LOG` filter.
    #[error("invalid log filter {0:?}: {1}")]
    Invalid(String, String),
    /// This process did not install Baton's logger (an embedded member).
    #[error("this process has no log filter to change (its logging is not Baton's)")]
    NotInstalled,
}

/// Replaces the log filter (`RUST_LOG` syntax, e.g. `debug` or `info,baton::consensus=trace`)
/// and returns the previous one.
///
/// # Errors
/// An invalid filter, or no logger installed by [`init`].
pub fn set_filter(text: &str) -> Result<String, FilterError> {
    let filter = EnvFilter::try_new(text)
        .map_err(|e| FilterError::Invalid(text.to_string(), e.to_string()))?;
    let f = FILTER.get().ok_or(FilterError::NotInstalled)?;
    f.handle
        .reload(filter)
        .map_err(|_| FilterError::NotInstalled)?;
    let mut current = f.current.lock().unwrap_or_else(|e| e.into_inner());
    Ok(std::mem::replace(&mut *current, text.to_string()))
}
