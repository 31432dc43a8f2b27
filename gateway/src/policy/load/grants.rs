//! What principals may do and how much: roles, plans and bindings, checked against each other
//! and against the principals.

use std::collections::{BTreeMap, BTreeSet};

use photondb_proto::names::is_name;
use toml::Spanned;

use super::raw::{BindingsFile, PlansFile, RawBinding, RawPlan, RawRole, RolesFile};
use super::source::{Doc, Docs};
use super::{LoadError, first_definition, principals};
use crate::policy::model::{ApiKey, Binding, Issuer, Partner, Permission, Plan, Role};
use crate::policy::pattern::parse_pattern;

/// The one principal without credentials.
pub(super) const ANONYMOUS: &str = "anonymous";

/// The plans and which apply by default.
#[derive(Debug)]
pub(super) struct Plans {
    pub(super) plans: BTreeMap<String, Plan>,
    pub(super) default_plan: String,
    pub(super) public_plan: Option<String>,
}

/// What bindings may refer to; `None`: that file did not load, so references to it are not
/// checked (its errors are reported already, and every reference would only repeat them).
#[derive(Debug)]
pub(super) struct Known<'a> {
    pub(super) roles: Option<&'a BTreeMap<String, Role>>,
    pub(super) partners: Option<&'a BTreeMap<String, Partner>>,
    pub(super) api_keys: Option<&'a BTreeMap<String, ApiKey>>,
    pub(super) issuers: Option<&'a BTreeMap<String, Issuer>>,
    pub(super) plans: Option<&'a Plans>,
}

pub(super) fn roles(
    docs: &Docs<'_>,
    errors: &mut Vec<LoadError>,
) -> Option<BTreeMap<String, Role>> {
    let (doc, file) = docs.parse::<RolesFile>("roles.toml", errors)?;
    let mut seen = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for raw in file.role {
        if let Some(first) = first_definition(&mut seen, raw.name.get_ref(), doc.at(&raw.name)) {
            errors.push(doc.error(&raw.name, duplicate("role", raw.name.get_ref(), &first)));
            continue;
        }
        let role = role(&doc, raw, errors);
        roles.insert(role.name.clone(), role);
    }
    Some(roles)
}

/// A role with its known permissions (an unknown one is reported, the rest kept so that its
/// bindings are still checked).
fn role(doc: &Doc<'_>, raw: RawRole, errors: &mut Vec<LoadError>) -> Role {
    check_name(doc, "role", &raw.name, errors);
    let mut permissions = BTreeSet::new();
    for p in &raw.permissions {
        match Permission::parse(p.get_ref()) {
            Some(permission) => {
                permissions.insert(permission);
            }
            None => errors.push(doc.error(p, unknown_permission(p.get_ref()))),
        }
    }
    Role {
        name: raw.name.into_inner(),
        permissions,
    }
}

fn unknown_permission(name: &str) -> String {
    let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
    format!("unknown permission `{name}` (known: {})", known.join(", "))
}

pub(super) fn plans(docs: &Docs<'_>, errors: &mut Vec<LoadError>) -> Option<Plans> {
    let (doc, file) = docs.parse::<PlansFile>("plans.toml", errors)?;
    let mut seen = BTreeMap::new();
    let mut plans = BTreeMap::new();
    for raw in file.plan {
        if let Some(first) = first_definition(&mut seen, raw.name.get_ref(), doc.at(&raw.name)) {
            errors.push(doc.error(&raw.name, duplicate("plan", raw.name.get_ref(), &first)));
            continue;
        }
        let plan = plan(&doc, raw, errors);
        plans.insert(plan.name.clone(), plan);
    }
    let default_plan = match &file.default_plan {
        Some(name) => plan_ref(&doc, &plans, name, errors),
        None => {
            errors.push(
                doc.whole("`default_plan` is missing: the plan of principals that name none"),
            );
            String::new()
        }
    };
    let public_plan = file
        .public_plan
        .as_ref()
        .map(|name| plan_ref(&doc, &plans, name, errors));
    Some(Plans {
        plans,
        default_plan,
        public_plan,
    })
}

fn plan(doc: &Doc<'_>, raw: RawPlan, errors: &mut Vec<LoadError>) -> Plan {
    check_name(doc, "plan", &raw.name, errors);
    for (field, value) in [("rate_per_sec", &raw.rate_per_sec), ("burst", &raw.burst)] {
        if *value.get_ref() == 0 {
            errors.push(doc.error(value, format!("{field} must be at least 1")));
        }
    }
    Plan {
        name: raw.name.into_inner(),
        rate_per_sec: raw.rate_per_sec.into_inner(),
        burst: raw.burst.into_inner(),
        daily_quota: raw.daily_quota,
    }
}

/// `name` as a reference to a defined plan.
fn plan_ref(
    doc: &Doc<'_>,
    plans: &BTreeMap<String, Plan>,
    name: &Spanned<String>,
    errors: &mut Vec<LoadError>,
) -> String {
    if !plans.contains_key(name.get_ref()) {
        errors.push(doc.error(name, unknown_plan(name.get_ref())));
    }
    name.get_ref().clone()
}

pub(super) fn unknown_plan(name: &str) -> String {
    format!("unknown plan `{name}` (not defined in plans.toml)")
}

pub(super) fn bindings(
    docs: &Docs<'_>,
    known: &Known<'_>,
    errors: &mut Vec<LoadError>,
) -> Option<Vec<Binding>> {
    let (doc, file) = docs.parse::<BindingsFile>("bindings.toml", errors)?;
    let bindings = file
        .binding
        .into_iter()
        .map(|raw| binding(&doc, known, raw, errors))
        .collect();
    Some(bindings)
}

fn binding(
    doc: &Doc<'_>,
    known: &Known<'_>,
    raw: RawBinding,
    errors: &mut Vec<LoadError>,
) -> Binding {
    if let Err(message) = principals::check_principal(raw.principal.get_ref(), known) {
        errors.push(doc.error(&raw.principal, message));
    }
    check_role(doc, known, &raw, errors);
    if raw.principal.get_ref() == ANONYMOUS {
        check_anonymous(doc, known, &raw, errors);
    }
    if raw.resources.is_empty() {
        errors.push(doc.error(&raw.principal, "a binding needs at least one resource"));
    }
    let mut resources = Vec::new();
    for text in &raw.resources {
        match parse_pattern(text.get_ref()) {
            Ok(pattern) => resources.push(pattern),
            Err(message) => errors.push(doc.error(text, message)),
        }
    }
    Binding {
        at: doc.at(&raw.principal),
        principal: raw.principal.into_inner(),
        role: raw.role.into_inner(),
        resources,
    }
}

fn check_role(doc: &Doc<'_>, known: &Known<'_>, raw: &RawBinding, errors: &mut Vec<LoadError>) {
    let Some(roles) = known.roles else { return };
    if !roles.contains_key(raw.role.get_ref()) {
        let message = format!(
            "unknown role `{}` (not defined in roles.toml)",
            raw.role.get_ref()
        );
        errors.push(doc.error(&raw.role, message));
    }
}

/// `anonymous` reads public tables and nothing else, within the one public budget.
fn check_anonymous(
    doc: &Doc<'_>,
    known: &Known<'_>,
    raw: &RawBinding,
    errors: &mut Vec<LoadError>,
) {
    if let Some(role) = known.roles.and_then(|r| r.get(raw.role.get_ref())) {
        let extra: Vec<&str> = role
            .permissions
            .iter()
            .filter(|&&p| p != Permission::TableRead)
            .map(|p| p.as_str())
            .collect();
        if !extra.is_empty() {
            let message = format!(
                "anonymous may only be granted table.read; role `{}` also grants {}",
                role.name,
                extra.join(", ")
            );
            errors.push(doc.error(&raw.role, message));
        }
    }
    if known.plans.is_some_and(|p| p.public_plan.is_none()) {
        let message = "anonymous bindings need `public_plan` in plans.toml (their shared budget)";
        errors.push(doc.error(&raw.principal, message));
    }
}

fn check_name(doc: &Doc<'_>, what: &str, name: &Spanned<String>, errors: &mut Vec<LoadError>) {
    if !is_name(name.get_ref()) {
        let message = format!(
            "bad {what} name `{}`: names are [a-z0-9_-]{{1,64}}",
            name.get_ref()
        );
        errors.push(doc.error(name, message));
    }
}

/// The message for a second definition.
pub(super) fn duplicate(what: &str, key: &str, first: &str) -> String {
    format!("duplicate {what} `{key}` (first defined at {first})")
}
