//! The one authorization decision (DESIGN §4), run by the gateway's step 9 and by
//! `photonctl policy explain`: deny by default; the first binding in file order that names the
//! principal, whose role grants the permission and one of whose patterns covers the resource,
//! allows it and is named. Otherwise the reason says how close the nearest bindings came.

use std::fmt;

use crate::operation::Resource;
use crate::policy::model::{Binding, Permission, PolicySet};
use crate::policy::pattern::covers;

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `binding` is the allowing binding's [`Binding::at`] (`bindings.toml:7`).
    Allowed {
        binding: String,
    },
    Denied {
        reason: DenyReason,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }
}

/// Why nothing matched; the bindings are named by [`Binding::at`], in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No binding names the principal.
    NoBinding,
    /// These bindings name the principal, but none of their roles grants the permission.
    NotGranted { bindings: Vec<String> },
    /// These bindings' roles grant the permission, but none of their patterns covers the
    /// resource.
    NotCovered { bindings: Vec<String> },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBinding => f.write_str("no binding names the principal"),
            Self::NotGranted { bindings } => write!(
                f,
                "the principal's bindings ({}) grant roles without the permission",
                bindings.join(", ")
            ),
            Self::NotCovered { bindings } => write!(
                f,
                "the bindings granting the permission ({}) do not cover the resource",
                bindings.join(", ")
            ),
        }
    }
}

/// Whether `principal` may `permission` on `resource` under `policy`.
pub fn decide(
    policy: &PolicySet,
    principal: &str,
    permission: Permission,
    resource: &Resource,
) -> Decision {
    let allowing = bindings_of(policy, principal)
        .filter(|b| grants(policy, b, permission))
        .find(|b| b.resources.iter().any(|p| covers(p, resource)));
    match allowing {
        Some(b) => Decision::Allowed {
            binding: b.at.clone(),
        },
        None => Decision::Denied {
            reason: why_not(policy, principal, permission),
        },
    }
}

/// Only called once nothing allowed: every binding that grants the permission failed on the
/// resource.
fn why_not(policy: &PolicySet, principal: &str, permission: Permission) -> DenyReason {
    let named: Vec<&Binding> = bindings_of(policy, principal).collect();
    if named.is_empty() {
        return DenyReason::NoBinding;
    }
    let granting: Vec<String> = named
        .iter()
        .filter(|b| grants(policy, b, permission))
        .map(|b| b.at.clone())
        .collect();
    if granting.is_empty() {
        DenyReason::NotGranted {
            bindings: named.iter().map(|b| b.at.clone()).collect(),
        }
    } else {
        DenyReason::NotCovered { bindings: granting }
    }
}

fn bindings_of<'a>(policy: &'a PolicySet, principal: &'a str) -> impl Iterator<Item = &'a Binding> {
    policy
        .bindings
        .iter()
        .filter(move |b| b.principal == principal)
}

/// A role the loader did not define grants nothing (the loader refuses such bindings anyway).
fn grants(policy: &PolicySet, binding: &Binding, permission: Permission) -> bool {
    policy
        .roles
        .get(&binding.role)
        .is_some_and(|role| role.permissions.contains(&permission))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use photondb_proto::names::{Name, TableRef};

    use super::*;
    use crate::policy::load::load_dir;

    fn repo_roles() -> PolicySet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        load_dir(&dir).expect("the repository's policies/ load")
    }

    fn binding(at: &str, principal: &str, role: &str, pattern: &str) -> Binding {
        Binding {
            at: at.into(),
            principal: principal.into(),
            role: role.into(),
            resources: vec![crate::policy::pattern::parse_pattern(pattern).unwrap()],
        }
    }

    fn table(db: &str, t: &str) -> Resource {
        Resource::Table(TableRef::parse(db, t).unwrap())
    }

    fn db(d: &str) -> Resource {
        Resource::Db(Name::parse(d).unwrap())
    }

    const BUILT_IN: [&str; 5] = ["admin", "cluster-admin", "db-owner", "writer", "reader"];

    /// Every built-in role × every permission × resources inside and outside a `db:shop`
    /// binding: allowed exactly when the role has the permission and the pattern covers it.
    #[test]
    fn matrix_of_roles_permissions_and_resources() {
        let base = repo_roles();
        // (resource, covered by `db:shop`)
        let resources = [
            (table("shop", "t"), true),
            (db("shop"), true),
            (table("other", "t"), false),
            (db("other"), false),
            (Resource::All, false),
        ];
        for role in BUILT_IN {
            let mut policy = base.clone();
            policy.bindings = vec![binding("bindings.toml:1", "partner:acme", role, "db:shop")];
            let has = &base.roles[role].permissions;
            for permission in Permission::ALL {
                for (resource, inside) in &resources {
                    let got = decide(&policy, "partner:acme", permission, resource);
                    let expected = has.contains(&permission) && *inside;
                    assert_eq!(
                        got.is_allowed(),
                        expected,
                        "{role} {} {resource}: {got:?}",
                        permission.as_str()
                    );
                    if expected {
                        assert_eq!(
                            got,
                            Decision::Allowed {
                                binding: "bindings.toml:1".into()
                            }
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn star_covers_all_targets_for_an_admin() {
        let mut policy = repo_roles();
        policy.bindings = vec![binding("bindings.toml:1", "partner:ops", "admin", "*")];
        for resource in [Resource::All, db("x"), table("x", "y")] {
            assert!(decide(&policy, "partner:ops", Permission::DbList, &resource).is_allowed());
        }
    }

    #[test]
    fn first_matching_binding_in_file_order_is_named() {
        let mut policy = repo_roles();
        policy.bindings = vec![
            binding("bindings.toml:1", "partner:acme", "reader", "db:other"),
            binding("bindings.toml:5", "partner:acme", "writer", "db:shop"),
            binding("bindings.toml:9", "partner:acme", "admin", "*"),
        ];
        let got = decide(
            &policy,
            "partner:acme",
            Permission::TableRead,
            &table("shop", "t"),
        );
        assert_eq!(
            got,
            Decision::Allowed {
                binding: "bindings.toml:5".into()
            }
        );
    }

    #[test]
    fn reasons_say_why_nothing_matched() {
        let mut policy = repo_roles();
        policy.bindings = vec![
            binding("bindings.toml:1", "partner:acme", "reader", "db:shop"),
            binding("bindings.toml:5", "partner:acme", "writer", "db:other"),
        ];
        let deny = |principal, permission, resource: &Resource| match decide(
            &policy, principal, permission, resource,
        ) {
            Decision::Denied { reason } => reason,
            allowed => panic!("allowed: {allowed:?}"),
        };
        assert_eq!(
            deny("partner:bob", Permission::TableRead, &table("shop", "t")),
            DenyReason::NoBinding
        );
        assert_eq!(
            deny("partner:acme", Permission::TableDelete, &table("shop", "t")),
            DenyReason::NotGranted {
                bindings: vec!["bindings.toml:1".into(), "bindings.toml:5".into()]
            }
        );
        assert_eq!(
            deny("partner:acme", Permission::TableWrite, &table("shop", "t")),
            DenyReason::NotCovered {
                bindings: vec!["bindings.toml:5".into()]
            }
        );
        assert_eq!(
            DenyReason::NotCovered {
                bindings: vec!["bindings.toml:5".into()]
            }
            .to_string(),
            "the bindings granting the permission (bindings.toml:5) do not cover the resource"
        );
    }

    #[test]
    fn an_empty_policy_denies_everything() {
        let policy = PolicySet::default();
        for permission in Permission::ALL {
            assert_eq!(
                decide(&policy, "anonymous", permission, &Resource::All),
                Decision::Denied {
                    reason: DenyReason::NoBinding
                }
            );
        }
    }
}
