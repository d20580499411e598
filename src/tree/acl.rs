//! ZooKeeper's access control: who a caller is ([`Caller`]), what a znode allows ([`Acl`]),
//! and the one check both the apply and the read paths use ([`allowed`]).
//!
//! Semantics follow ZooKeeper: an ACL is a list of (scheme:id, permissions); a caller may do
//! an operation if some entry grants the permission and names `world:anyone` or one of the
//! caller's ids; a super principal may do everything; ACLs are not inherited (each node has
//! its own). A node created without an ACL is open to all (`world:anyone` with every
//! permission), stored as the empty list so that open nodes cost nothing.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use crate::error::BatonError;

/// Read data, list children, `exists` on an existing node, get the ACL, watch.
pub const READ: u32 = 1;
/// Set data.
pub const WRITE: u32 = 1 << 1;
/// Create a child.
pub const CREATE: u32 = 1 << 2;
/// Delete a child.
pub const DELETE: u32 = 1 << 3;
/// Set the ACL; see digest ids unmasked; administer the cluster (on `/`).
pub const ADMIN: u32 = 1 << 4;
/// Every permission.
pub const ALL: u32 = READ | WRITE | CREATE | DELETE | ADMIN;

/// The name of one permission bit, for errors.
pub fn perm_name(perm: u32) -> &'static str {
    match perm {
        READ => "READ",
        WRITE => "WRITE",
        CREATE => "CREATE",
        DELETE => "DELETE",
        ADMIN => "ADMIN",
        _ => "several permissions",
    }
}

/// Permissions as ZooKeeper's letters (`cdrwa`), for display.
pub fn perms_letters(perms: u32) -> String {
    [
        (CREATE, 'c'),
        (DELETE, 'd'),
        (READ, 'r'),
        (WRITE, 'w'),
        (ADMIN, 'a'),
    ]
    .iter()
    .filter(|(bit, _)| perms & bit != 0)
    .map(|(_, c)| *c)
    .collect()
}

/// Parses `cdrwa` letters (any order, each at most once).
///
/// # Errors
/// `INVALID_ACL` naming the bad letter.
pub fn parse_letters(s: &str) -> Result<u32, BatonError> {
    let mut perms = 0;
    for c in s.chars() {
        let bit = match c {
            'c' => CREATE,
            'd' => DELETE,
            'r' => READ,
            'w' => WRITE,
            'a' => ADMIN,
            _ => {
                return Err(BatonError::InvalidAcl(format!(
                    "unknown permission letter {c:?} (use c, d, r, w, a)"
                )))
            }
        };
        perms |= bit;
    }
    Ok(perms)
}

/// An identity in a scheme: `world:anyone`, `digest:user:hash`, `x509:CN=...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    /// `world`, `digest`, `x509` (or `auth` in an ACL before it is expanded).
    pub scheme: String,
    /// The id within the scheme.
    pub id: String,
}

impl Id {
    /// An id.
    pub fn new(scheme: &str, id: &str) -> Self {
        Id {
            scheme: scheme.to_string(),
            id: id.to_string(),
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scheme, self.id)
    }
}

/// One ACL entry: permissions granted to an id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Acl {
    /// Bits of [`READ`], [`WRITE`], [`CREATE`], [`DELETE`], [`ADMIN`].
    pub perms: u32,
    /// Who gets them.
    pub id: Id,
}

/// The ACL of a node created without one: everyone may do everything.
pub fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: ALL,
        id: Id::new("world", "anyone"),
    }]
}

/// Who makes a request: the ids it authenticated with, and whether one of them is a super
/// principal. Holds no secret (digest ids are hashes), so it may be logged and replicated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Authenticated ids (`digest` and `x509` schemes).
    pub ids: Vec<Id>,
    /// A super principal: every check passes.
    pub superuser: bool,
}

impl Caller {
    /// True if the caller authenticated with nothing.
    pub fn is_anonymous(&self) -> bool {
        self.ids.is_empty() && !self.superuser
    }
}

/// Whether `caller` holds `perm` on a node whose ACL is `acl` (empty = open).
pub fn allowed(acl: &[Acl], caller: &Caller, perm: u32) -> bool {
    if caller.superuser || acl.is_empty() {
        return true;
    }
    acl.iter().any(|a| {
        a.perms & perm != 0
            && ((a.id.scheme == "world" && a.id.id == "anyone") || caller.ids.contains(&a.id))
    })
}

/// `allowed`, or `NO_AUTH` naming the path and the permission.
///
/// # Errors
/// `NO_AUTH`.
pub fn require(acl: &[Acl], caller: &Caller, perm: u32, path: &str) -> Result<(), BatonError> {
    if allowed(acl, caller, perm) {
        Ok(())
    } else {
        Err(BatonError::NoAuth {
            path: path.to_string(),
            need: perm_name(perm),
        })
    }
}

/// ZooKeeper's digest id of `user:password`: `user:base64(sha1("user:password"))`.
pub fn digest_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Checks an ACL given by a caller and puts it in stored form: `auth` entries expanded to
/// the caller's ids, each scheme's id checked, duplicates merged; the open ACL is stored as
/// the empty list.
///
/// # Errors
/// `INVALID_ACL`: an empty list, an unknown scheme, a malformed id, no permission bit, or
/// `auth` from a caller with no ids.
pub fn canonical(given: &[Acl], caller: &Caller) -> Result<Vec<Acl>, BatonError> {
    if given.is_empty() {
        return Err(BatonError::InvalidAcl(
            "an ACL needs at least one entry".into(),
        ));
    }
    let mut out: Vec<Acl> = Vec::new();
    let mut push = |a: Acl| {
        if let Some(e) = out.iter_mut().find(|e| e.id == a.id) {
            e.perms |= a.perms;
        } else {
            out.push(a);
        }
    };
    for a in given {
        if a.perms == 0 || a.perms & !ALL != 0 {
            return Err(BatonError::InvalidAcl(format!(
                "entry {} has permissions {:#x}; use a non-empty set of c, d, r, w, a",
                a.id, a.perms
            )));
        }
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => push(a.clone()),
            "world" => {
                return Err(BatonError::InvalidAcl(
                    "the world scheme has one id: anyone".into(),
                ))
            }
            "digest" => {
                let Some((user, hash)) = a.id.id.split_once(':') else {
                    return Err(BatonError::InvalidAcl(
                        "a digest id is user:base64(sha1(user:password))".into(),
                    ));
                };
                let decoded = base64::engine::general_purpose::STANDARD.decode(hash);
                if user.is_empty() || !matches!(decoded, Ok(ref h) if h.len() == 20) {
                    return Err(BatonError::InvalidAcl(
                        "a digest id is user:base64(sha1(user:password))".into(),
                    ));
                }
                push(a.clone());
            }
            "x509" if !a.id.id.is_empty() && a.id.id.len() <= 1024 => push(a.clone()),
            "x509" => {
                return Err(BatonError::InvalidAcl(
                    "an x509 id is the certificate's identity (1 to 1024 bytes)".into(),
                ))
            }
            "auth" => {
                if caller.ids.is_empty() {
                    return Err(BatonError::InvalidAcl(
                        "the auth scheme stands for the caller's ids, and the caller has none"
                            .into(),
                    ));
                }
                for id in &caller.ids {
                    push(Acl {
                        perms: a.perms,
                        id: id.clone(),
                    });
                }
            }
            other => {
                return Err(BatonError::InvalidAcl(format!(
                    "unknown scheme {other:?} (use world, auth, digest or x509)"
                )))
            }
        }
    }
    if out.len() > MAX_ACL_ENTRIES {
        return Err(BatonError::InvalidAcl(format!(
            "{} entries; at most {MAX_ACL_ENTRIES}",
            out.len()
        )));
    }
    if out == open_acl() {
        out.clear();
    }
    Ok(out)
}

/// Most entries one ACL may hold.
pub const MAX_ACL_ENTRIES: usize = 64;

/// The ACL as shown to a caller: the open ACL spelled out; digest hashes masked unless the
/// caller holds ADMIN on the node (a hash is enough to guess weak passwords offline).
pub fn shown(acl: &[Acl], caller: &Caller) -> Vec<Acl> {
    if acl.is_empty() {
        return open_acl();
    }
    let admin = allowed(acl, caller, ADMIN);
    acl.iter()
        .map(|a| {
            if admin || a.id.scheme != "digest" {
                a.clone()
            } else {
                let user = a.id.id.split_once(':').map_or("", |(u, _)| u);
                Acl {
                    perms: a.perms,
                    id: Id::new("digest", &format!("{user}:x")),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(perms: u32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id::new(scheme, id),
        }
    }

    #[test]
    fn digest_ids_match_zookeepers() {
        // The test vector ZooKeeper's own tests use for super:test.
        assert_eq!(
            digest_id("super", "test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn the_check_follows_zookeeper() {
        let alice = Caller {
            ids: vec![Id::new("digest", &digest_id("alice", "pw"))],
            superuser: false,
        };
        let anon = Caller::default();
        let root = Caller {
            ids: vec![],
            superuser: true,
        };
        let only_alice = vec![acl(READ | WRITE, "digest", &digest_id("alice", "pw"))];
        assert!(allowed(&only_alice, &alice, READ));
        assert!(allowed(&only_alice, &alice, WRITE));
        assert!(!allowed(&only_alice, &alice, DELETE), "no bit, no access");
        assert!(!allowed(&only_alice, &anon, READ));
        assert!(
            allowed(&only_alice, &root, ADMIN),
            "super passes every check"
        );
        assert!(allowed(&[], &anon, ADMIN), "the empty ACL is open");
        let world_read = vec![acl(READ, "world", "anyone")];
        assert!(allowed(&world_read, &anon, READ));
        assert!(!allowed(&world_read, &anon, WRITE));
        // Same id text in another scheme does not match.
        let x = vec![acl(READ, "x509", &digest_id("alice", "pw"))];
        assert!(!allowed(&x, &alice, READ));
        assert!(matches!(
            require(&x, &alice, READ, "/a"),
            Err(BatonError::NoAuth { need: "READ", .. })
        ));
    }

    #[test]
    fn acls_are_checked_and_expanded() {
        let alice = Caller {
            ids: vec![
                Id::new("digest", &digest_id("alice", "pw")),
                Id::new("x509", "CN=alice"),
            ],
            superuser: false,
        };
        let got = canonical(&[acl(READ, "auth", "")], &alice).expect("auth expands");
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|a| a.perms == READ));
        assert!(canonical(&[acl(READ, "auth", "")], &Caller::default()).is_err());
        assert!(canonical(&[], &alice).is_err(), "empty");
        assert!(
            canonical(&[acl(0, "world", "anyone")], &alice).is_err(),
            "no bit"
        );
        assert!(
            canonical(&[acl(64, "world", "anyone")], &alice).is_err(),
            "unknown bit"
        );
        assert!(canonical(&[acl(READ, "world", "bob")], &alice).is_err());
        assert!(canonical(&[acl(READ, "ip", "10.0.0.1")], &alice).is_err());
        assert!(canonical(&[acl(READ, "digest", "alice:notbase64")], &alice).is_err());
        assert!(canonical(&[acl(READ, "digest", "alice")], &alice).is_err());
        assert!(canonical(&[acl(READ, "x509", "")], &alice).is_err());
        // The open ACL is stored empty; duplicates merge.
        assert!(canonical(&open_acl(), &alice).expect("open").is_empty());
        let merged = canonical(
            &[acl(READ, "world", "anyone"), acl(WRITE, "world", "anyone")],
            &alice,
        )
        .expect("merge");
        assert_eq!(merged, vec![acl(READ | WRITE, "world", "anyone")]);
    }

    #[test]
    fn digest_hashes_are_masked_without_admin() {
        let alice = Caller {
            ids: vec![Id::new("digest", &digest_id("alice", "pw"))],
            superuser: false,
        };
        let a = vec![
            acl(ALL, "digest", &digest_id("alice", "pw")),
            acl(READ, "digest", &digest_id("bob", "pw")),
        ];
        assert_eq!(shown(&a, &alice), a, "ADMIN sees the hashes");
        let masked = shown(&a, &Caller::default());
        assert_eq!(masked[0].id.id, "alice:x");
        assert_eq!(masked[1].id.id, "bob:x");
        assert_eq!(shown(&[], &Caller::default()), open_acl());
        assert_eq!(parse_letters("cdrwa").expect("all"), ALL);
        assert_eq!(perms_letters(READ | ADMIN), "ra");
        assert!(parse_letters("rx").is_err());
    }
}
