//! Path validation: the rules a path and a sequential prefix must follow, and `INVALID_PATH`.

use crate::error::{BatonError, Reason};
use crate::tree::path::{self, PathLimits};

fn path_ok(p: &str) -> bool {
    path::validate(p, false, &PathLimits::default()).is_ok()
}

fn path_why(p: &str) -> String {
    match path::validate(p, false, &PathLimits::default()) {
        Err(BatonError::InvalidPath { path, why }) => {
            assert_eq!(path, p);
            why
        }
        other => panic!("{p:?} should be INVALID_PATH, got {other:?}"),
    }
}

#[test]
fn path_must_not_be_empty() {
    assert!(path_why("").contains("empty"));
}

#[test]
fn path_must_be_absolute() {
    for p in ["a", "a/b", ".", "..", "a/"] {
        assert!(!path_ok(p), "{p:?}");
    }
}

#[test]
fn path_must_not_have_dot_or_dot_dot_components() {
    for p in [
        "/.", "/..", "/a/.", "/a/..", "/./a", "/../a", "/a/./b", "/a/../b",
    ] {
        assert!(!path_ok(p), "{p:?}");
    }
    for p in ["/...", "/.a", "/a.", "/..a", "/a/b..", "/a/.b/c"] {
        assert!(path_ok(p), "{p:?}: dots are fine inside a name");
    }
}

#[test]
fn path_must_not_contain_nul_or_control_characters() {
    for p in [
        "/\0", "/a\0", "/a\0/b", "/a/\0b", "/\u{1f}", "/a\u{7f}", "/a\u{9f}", "/a\tb", "/a\nb",
    ] {
        assert!(!path_ok(p), "{p:?}");
    }
    assert!(path_ok("/a\u{a0}b"), "U+00A0 is not a control character");
}

#[test]
fn path_must_not_contain_zookeepers_disallowed_characters() {
    // ZooKeeper disallows \uD800-\uF8FF (Rust strings cannot hold surrogates, so U+E000-U+F8FF)
    // and \uFFF0-\uFFFF.
    for c in [
        '\u{e000}', '\u{efff}', '\u{f000}', '\u{f8ff}', '\u{fff0}', '\u{ffff}',
    ] {
        let p = format!("/a{c}");
        assert!(!path_ok(&p), "U+{:04X}", c as u32);
    }
    for c in ['\u{d7ff}', '\u{f900}', '\u{ffef}'] {
        let p = format!("/a{c}");
        assert!(path_ok(&p), "U+{:04X}", c as u32);
    }
}

#[test]
fn path_must_not_end_with_a_slash_unless_it_is_the_root() {
    assert!(path_ok("/"));
    for p in ["/a/", "/a/b/", "//"] {
        assert!(path_why(p).contains("end"), "{p:?}");
    }
}

#[test]
fn path_must_not_have_empty_components() {
    for p in ["//a", "/a//b", "/a///"] {
        assert!(!path_ok(p), "{p:?}");
    }
}

#[test]
fn sequential_prefix_may_end_with_a_slash_or_a_partial_name() {
    let l = PathLimits::default();
    for p in ["/", "/a/", "/a/x-", "/a/.", "/a/.."] {
        assert!(path::validate(p, true, &l).is_ok(), "{p:?}");
    }
    for p in [
        "",
        "a/",
        "/a//",
        "//",
        "//x-",
        "/./",
        "/../x",
        "/a/./",
        "/a\0/",
        "/a\u{e000}/",
    ] {
        assert!(path::validate(p, true, &l).is_err(), "{p:?}");
    }
}

#[test]
fn sequential_prefix_depth_is_the_depth_of_the_final_node() {
    let l = PathLimits {
        max_len: 100,
        max_depth: 2,
    };
    assert!(path::validate("/a/", true, &l).is_ok());
    assert!(path::validate("/a/x-", true, &l).is_ok());
    // "/a/b/" names "/a/b/0000000000": three components.
    assert!(path::validate("/a/b/", true, &l).is_err());
    assert!(path::validate("/a/b/x-", true, &l).is_err());
}

#[test]
fn path_errors_are_invalid_path() {
    let e = path::validate("/a/", false, &PathLimits::default()).unwrap_err();
    assert_eq!(e.reason(), Reason::InvalidPath);
}
