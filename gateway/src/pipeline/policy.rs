//! Pipeline step 9 (slot): authorization, deny by default. [`Permit`] can only be built here,
//! and names the binding that allowed the request. [`FilePolicy`] asks the policy directory
//! through [`decide`], the same function `photonctl policy explain` runs.

use crate::config::DevMode;
use crate::operation::Target;
use crate::pipeline::auth::Authenticated;
use crate::policy::decide::{Decision, decide};
use crate::policy::model::{Permission, PolicySet};

/// The binding a dev-mode [`Permit`] names.
pub const DEV_BINDING: &str = "dev";

/// Proof that step 9 allowed one target for one request; neither `Clone` nor `Copy`.
#[derive(Debug)]
pub struct Permit {
    request_id: String,
    target: Target,
    binding: String,
}

impl Permit {
    /// The request this proof vouches for.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// What it allows.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Where the allowing binding is defined (`bindings.toml:7`), or [`DEV_BINDING`]: for
    /// audit lines and logs, never for the client.
    pub fn binding(&self) -> &str {
        &self.binding
    }

    fn of(auth: &Authenticated, target: &Target, binding: String) -> Self {
        Self {
            request_id: auth.request_id().to_owned(),
            target: target.clone(),
            binding,
        }
    }
}

/// Denied: the response names the action and resource, never the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub Target);

/// The step-9 slot. `policy` is the request's one snapshot of the policy set.
pub trait Policy: Send + Sync {
    fn authorize(
        &self,
        auth: &Authenticated,
        target: &Target,
        policy: &PolicySet,
    ) -> Result<Permit, Denied>;
}

/// Dev mode only: permits everything.
#[derive(Debug)]
pub struct DevAllowAll(DevMode);

impl DevAllowAll {
    pub fn new(dev: DevMode) -> Self {
        Self(dev)
    }
}

impl Policy for DevAllowAll {
    fn authorize(
        &self,
        auth: &Authenticated,
        target: &Target,
        _: &PolicySet,
    ) -> Result<Permit, Denied> {
        Ok(Permit::of(auth, target, DEV_BINDING.to_owned()))
    }
}

/// The policy directory's bindings decide.
#[derive(Debug, Default)]
pub struct FilePolicy(());

impl FilePolicy {
    pub fn new() -> Self {
        Self(())
    }
}

impl Policy for FilePolicy {
    fn authorize(
        &self,
        auth: &Authenticated,
        target: &Target,
        policy: &PolicySet,
    ) -> Result<Permit, Denied> {
        let principal = auth.principal().as_str();
        let permission = Permission::of(target.action);
        match decide(policy, principal, permission, &target.resource) {
            Decision::Allowed { binding } => Ok(Permit::of(auth, target, binding)),
            Decision::Denied { reason } => {
                // For the operator; the client only learns the action and resource.
                tracing::debug!(principal, %reason, version = %policy.version, "policy denied");
                Err(Denied(target.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use photondb_proto::names::{Name, TableRef};

    use super::*;
    use crate::operation::Action;
    use crate::policy::load::load_dir;

    /// A set whose only binding lets `anonymous` read `db:public/table:news`.
    fn public_news() -> (tempfile::TempDir, PolicySet) {
        let dir = tempfile::tempdir().unwrap();
        let roles = "[[role]]\nname = \"public-reader\"\npermissions = [\"table.read\"]\n";
        let plans = "default_plan = \"p\"\npublic_plan = \"p\"\n[[plan]]\nname = \"p\"\nrate_per_sec = 1\nburst = 1\n";
        let bindings = "[[binding]]\nprincipal = \"anonymous\"\nrole = \"public-reader\"\nresources = [\"db:public/table:news\"]\n";
        for (name, text) in [
            ("roles.toml", roles),
            ("plans.toml", plans),
            ("bindings.toml", bindings),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let set = load_dir(dir.path()).unwrap();
        (dir, set)
    }

    fn read(db: &str, table: &str) -> Target {
        Target::table(Action::TableRead, &TableRef::parse(db, table).unwrap())
    }

    #[test]
    fn file_policy_permits_with_the_binding_and_denies_the_rest() {
        let (_dir, set) = public_news();
        let auth = Authenticated::anonymous("rid-1");
        let permit = FilePolicy::new()
            .authorize(&auth, &read("public", "news"), &set)
            .unwrap();
        assert_eq!(permit.binding(), "bindings.toml:2");
        assert_eq!(permit.request_id(), "rid-1");
        assert_eq!(permit.target(), &read("public", "news"));

        let other = read("public", "secrets");
        assert_eq!(
            FilePolicy::new()
                .authorize(&auth, &other, &set)
                .unwrap_err(),
            Denied(other)
        );
        let list = Target::db(Action::DbList, &Name::parse("public").unwrap());
        assert_eq!(
            FilePolicy::new().authorize(&auth, &list, &set).unwrap_err(),
            Denied(list)
        );
    }

    #[test]
    fn an_empty_policy_denies() {
        let auth = Authenticated::anonymous("rid-2");
        let target = read("public", "news");
        let got = FilePolicy::new().authorize(&auth, &target, &PolicySet::default());
        assert_eq!(got.unwrap_err(), Denied(target));
    }

    #[test]
    fn dev_mode_permits_naming_the_dev_binding() {
        let auth = Authenticated::anonymous("rid-3");
        let target = Target::all(Action::StorageInspect);
        let permit = DevAllowAll::new(DevMode::for_tests())
            .authorize(&auth, &target, &PolicySet::default())
            .unwrap();
        assert_eq!(permit.binding(), DEV_BINDING);
    }
}
