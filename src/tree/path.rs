//! Znode path rules (ZooKeeper's, plus explicit length and depth bounds).

use crate::error::BatonError;

/// Bounds on paths, configurable per server.
#[derive(Clone, Copy, Debug)]
pub struct PathLimits {
    /// Longest path in bytes.
    pub max_len: usize,
    /// Most components.
    pub max_depth: usize,
}

impl Default for PathLimits {
    fn default() -> Self {
        PathLimits {
            max_len: 4096,
            max_depth: 256,
        }
    }
}

/// The subtree reserved for the system; clients may not write under it.
pub const RESERVED: &str = "/baton";

fn invalid(path: &str, why: impl Into<String>) -> BatonError {
    BatonError::InvalidPath {
        path: path.to_string(),
        why: why.into(),
    }
}

/// Checks a path. `sequential` allows a trailing `/` (the suffix is appended to it, as in
/// ZooKeeper's sequential creates).
///
/// # Errors
/// `INVALID_PATH` naming the first rule broken.
pub fn validate(path: &str, sequential: bool, limits: &PathLimits) -> Result<(), BatonError> {
    if path.is_empty() {
        return Err(invalid(path, "path is empty"));
    }
    if !path.starts_with('/') {
        return Err(invalid(path, "path must start with '/'"));
    }
    if path.len() > limits.max_len {
        return Err(invalid(
            path,
            format!(
                "path is {} bytes, longer than {}",
                path.len(),
                limits.max_len
            ),
        ));
    }
    if path == "/" {
        return Ok(());
    }
    if !sequential && path.ends_with('/') {
        return Err(invalid(path, "path must not end with '/'"));
    }
    // For a sequential create the last component is only a prefix of the final name (the
    // suffix is appended to it), so it may be empty ("/a/"), "." or ".." (ZooKeeper validates
    // `path + "1"`). Every other component must be a real name.
    let depth = path[1..].split('/').count();
    for (i, comp) in path[1..].split('/').enumerate() {
        if sequential && i + 1 == depth {
            break;
        }
        if comp.is_empty() {
            return Err(invalid(path, "empty component ('//')"));
        }
        if comp == "." || comp == ".." {
            return Err(invalid(path, "relative component ('.' or '..')"));
        }
    }
    if depth > limits.max_depth {
        return Err(invalid(
            path,
            format!(
                "path has {depth} components, more than {}",
                limits.max_depth
            ),
        ));
    }
    for c in path.chars() {
        let bad = c == '\u{0}'
            || ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            // ZooKeeper's \uD800-\uF8FF: surrogates cannot occur in a `str`, the rest is
            // the private use area.
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c);
        if bad {
            return Err(invalid(
                path,
                format!("invalid character U+{:04X}", c as u32),
            ));
        }
    }
    Ok(())
}

/// The parent of a valid path (`/` for top-level nodes); `None` for `/`.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last component of a valid path (empty for `/`).
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `path` is `ancestor` or below it.
pub fn is_under(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return true;
    }
    path == ancestor
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path.as_bytes()[ancestor.len()] == b'/')
}

/// Whether writes to `path` are refused because it is in the reserved subtree.
pub fn is_reserved(path: &str) -> bool {
    is_under(path, RESERVED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> bool {
        validate(p, false, &PathLimits::default()).is_ok()
    }

    #[test]
    fn accepts_normal_paths() {
        assert!(ok("/"));
        assert!(ok("/a"));
        assert!(ok("/a/b-c.d/e_f"));
        assert!(ok("/a/..b"));
        assert!(ok("/ünïcödé"));
    }

    #[test]
    fn rejects_bad_paths() {
        for p in [
            "", "a", "a/b", "/a/", "//", "/a//b", "/a/./b", "/a/../b", "/..", "/.", "/a\0b",
            "/a\u{1}", "/a\u{7f}",
        ] {
            assert!(!ok(p), "{p:?} should be invalid");
        }
    }

    #[test]
    fn sequential_allows_trailing_slash() {
        let l = PathLimits::default();
        assert!(validate("/a/", true, &l).is_ok());
        assert!(validate("/a/", false, &l).is_err());
        assert!(validate("/a//", true, &l).is_err());
    }

    #[test]
    fn bounds_length_and_depth() {
        let l = PathLimits {
            max_len: 10,
            max_depth: 2,
        };
        assert!(validate("/abcdefghij", false, &l).is_err());
        assert!(validate("/a/b/c", false, &l).is_err());
        assert!(validate("/a/b", false, &l).is_ok());
    }

    #[test]
    fn parent_name_join() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(name("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert!(is_under("/a/b", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/baton/x", RESERVED));
        assert!(!is_reserved("/batons"));
    }
}
