//! Endpoint strings as users write them (`127.0.0.1:7420`, `http://host:7420`, `localhost`)
//! turned into the URIs tonic connects to.

use super::ClientError;

/// Port used when an endpoint names only a host.
pub const DEFAULT_PORT: u16 = 7420;

/// Normalises one endpoint into an `http://host:port` or `https://host:port` URI.
///
/// Accepts `host:port`, `host` (port 7420), `[v6]:port`, and the same with an `http://` or
/// `https://` scheme; a trailing `/` is dropped. Without a scheme the endpoint is `http://`.
///
/// # Errors
/// [`ClientError::InvalidEndpoint`] for an empty string, another scheme, a path after the
/// authority, or a port that is not a number in 1..=65535.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, ClientError> {
    let invalid = |why: &str| ClientError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        why: why.to_string(),
    };
    let trimmed = endpoint.trim();
    let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(trimmed, "http://") {
        ("http", rest)
    } else if let Some(rest) = strip_prefix_ignore_case(trimmed, "https://") {
        ("https", rest)
    } else if trimmed.contains("://") {
        return Err(invalid("only http:// and https:// endpoints are supported"));
    } else {
        ("http", trimmed)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(invalid("empty endpoint"));
    }
    if authority.contains('/') || authority.contains('?') || authority.contains('#') {
        return Err(invalid("an endpoint is host:port, without a path"));
    }
    if authority.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(invalid("unexpected character"));
    }
    let (host, port) = split_host_port(authority).map_err(|why| invalid(&why))?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(invalid("port must be a number in 1..=65535")),
            Ok(p) => p,
        },
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    let uri = format!("{scheme}://{host}:{port}");
    uri.parse::<tonic::codegen::http::Uri>()
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(uri)
}

/// Splits `host[:port]`, keeping the brackets of an IPv6 literal.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or_else(|| "unterminated IPv6 literal".to_string())?;
        let host = &authority[..=close];
        let after = &authority[close + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("unexpected text after IPv6 literal".to_string()),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            Err("IPv6 addresses must be written in brackets, e.g. [::1]:7420".to_string())
        }
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// The endpoint without its `http://` or `https://` scheme, for display.
pub fn without_scheme(uri: &str) -> &str {
    uri.strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .unwrap_or(uri)
}

/// Splits a comma-separated endpoint list, dropping empty items and surrounding spaces.
pub fn split_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_common_forms() {
        let ok = |s: &str| normalize_endpoint(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("127.0.0.1:7420"), "http://127.0.0.1:7420");
        assert_eq!(ok(" 127.0.0.1:9 "), "http://127.0.0.1:9");
        assert_eq!(ok("http://10.0.0.1:1234/"), "http://10.0.0.1:1234");
        assert_eq!(ok("HTTP://node-1:7420"), "http://node-1:7420");
        assert_eq!(ok("localhost"), "http://localhost:7420");
        assert_eq!(ok("[::1]:7000"), "http://[::1]:7000");
        assert_eq!(ok("[::1]"), "http://[::1]:7420");
        assert_eq!(ok("https://node-1"), "https://node-1:7420");
        assert_eq!(ok("HTTPS://10.0.0.1:9/"), "https://10.0.0.1:9");
    }

    #[test]
    fn strips_schemes_for_display() {
        assert_eq!(without_scheme("https://a:1"), "a:1");
        assert_eq!(without_scheme("http://a:1"), "a:1");
        assert_eq!(without_scheme("a:1"), "a:1");
    }

    #[test]
    fn rejects_bad_endpoints() {
        for bad in [
            "",
            "   ",
            "https://",
            "grpc://a:1",
            "a:notaport",
            "a:0",
            "a:70000",
            "a:1/path",
            "::1",
            "[::1",
            ":7420",
            "user@host:1",
        ] {
            assert!(
                matches!(
                    normalize_endpoint(bad),
                    Err(ClientError::InvalidEndpoint { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn splits_lists() {
        assert_eq!(
            split_endpoints(" a:1, ,b:2,"),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        assert!(split_endpoints("").is_empty());
    }
}
