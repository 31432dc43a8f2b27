//! Who can authenticate: partners (their keys are checked in `keys.rs`), API keys and JWT
//! issuers; and which principal names a binding may use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use photondb_proto::signing::AuthFields;
use toml::Spanned;

use super::grants::{ANONYMOUS, Known, Plans, duplicate, unknown_plan};
use super::raw::{ApiKeysFile, IssuersFile, PartnersFile, RawApiKey, RawIssuer, RawPartner};
use super::source::{Doc, Docs};
use super::{LoadError, first_definition, keys};
use crate::policy::model::{ApiKey, Issuer, JwtAlgorithm, Partner};

/// The longest JWT leeway accepted: "small" (DESIGN §3.5).
const MAX_LEEWAY_SECS: u64 = 300;
const DEFAULT_LEEWAY_SECS: u64 = 30;

pub(super) fn partners(
    docs: &Docs<'_>,
    plans: Option<&Plans>,
    errors: &mut Vec<LoadError>,
) -> Option<BTreeMap<String, Partner>> {
    let (doc, file) = docs.parse::<PartnersFile>("partners.toml", errors)?;
    let mut seen = BTreeMap::new();
    let mut partners = BTreeMap::new();
    for raw in file.partner {
        if let Some(first) = first_definition(&mut seen, raw.id.get_ref(), doc.at(&raw.id)) {
            errors.push(doc.error(&raw.id, duplicate("partner", raw.id.get_ref(), &first)));
            continue;
        }
        let partner = partner(&doc, plans, raw, errors);
        partners.insert(partner.id.clone(), partner);
    }
    Some(partners)
}

fn partner(
    doc: &Doc<'_>,
    plans: Option<&Plans>,
    raw: RawPartner,
    errors: &mut Vec<LoadError>,
) -> Partner {
    if !is_partner_id(raw.id.get_ref()) {
        let message = format!(
            "bad partner id `{}`: 1-64 characters of [A-Za-z0-9._-] (as X-Partner-Id)",
            raw.id.get_ref()
        );
        errors.push(doc.error(&raw.id, message));
    }
    let plan = match (&raw.plan, plans) {
        (Some(name), Some(plans)) if !plans.plans.contains_key(name.get_ref()) => {
            errors.push(doc.error(name, unknown_plan(name.get_ref())));
            name.get_ref().clone()
        }
        (Some(name), _) => name.get_ref().clone(),
        (None, plans) => plans.map(|p| p.default_plan.clone()).unwrap_or_default(),
    };
    let keys = keys::partner_keys(doc, raw.id.get_ref(), raw.key, errors);
    Partner {
        at: doc.at(&raw.id),
        id: raw.id.into_inner(),
        plan,
        keys,
    }
}

/// The `X-Partner-Id` shape, checked by the one rule in `proto/` (the other fields are fixed
/// valid values).
fn is_partner_id(id: &str) -> bool {
    AuthFields::new(
        id,
        "00000000-0000-0000-0000-000000000000",
        "1970-01-01T00:00:00Z",
    )
    .is_ok()
}

/// API keys and whether they are accepted.
#[derive(Debug)]
pub(super) struct ApiKeys {
    pub(super) enabled: bool,
    pub(super) keys: BTreeMap<String, ApiKey>,
}

pub(super) fn api_keys(
    docs: &Docs<'_>,
    partners: Option<&BTreeMap<String, Partner>>,
    errors: &mut Vec<LoadError>,
) -> Option<ApiKeys> {
    let (doc, file) = docs.parse::<ApiKeysFile>("api_keys.toml", errors)?;
    let mut seen = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for raw in file.api_key {
        if let Some(first) = first_definition(&mut seen, raw.id.get_ref(), doc.at(&raw.id)) {
            errors.push(doc.error(&raw.id, duplicate("API key", raw.id.get_ref(), &first)));
            continue;
        }
        let key = api_key(&doc, partners, raw, errors);
        keys.insert(key.id.clone(), key);
    }
    Some(ApiKeys {
        enabled: file.enabled,
        keys,
    })
}

fn api_key(
    doc: &Doc<'_>,
    partners: Option<&BTreeMap<String, Partner>>,
    raw: RawApiKey,
    errors: &mut Vec<LoadError>,
) -> ApiKey {
    if !is_key_id(raw.id.get_ref()) {
        let message = format!(
            "bad API key id `{}`: 1-64 characters of [a-z0-9-]",
            raw.id.get_ref()
        );
        errors.push(doc.error(&raw.id, message));
    }
    let secret_sha256 = parse_sha256_hex(raw.secret_sha256.get_ref()).unwrap_or_else(|| {
        let message =
            "secret_sha256 must be 64 lowercase hex characters (the SHA-256 of the secret)";
        errors.push(doc.error(&raw.secret_sha256, message));
        [0; 32]
    });
    let principal = match &raw.principal {
        Some(p) => {
            if let Err(message) = key_principal(p.get_ref(), partners) {
                errors.push(doc.error(p, message));
            }
            p.get_ref().clone()
        }
        None => format!("key:{}", raw.id.get_ref()),
    };
    ApiKey {
        id: raw.id.into_inner(),
        secret_sha256,
        principal,
        revoked: raw.revoked,
    }
}

/// An API key stands for `key:<name>` or for a defined partner.
fn key_principal(
    principal: &str,
    partners: Option<&BTreeMap<String, Partner>>,
) -> Result<(), String> {
    if let Some(name) = principal.strip_prefix("key:") {
        return if is_key_id(name) {
            Ok(())
        } else {
            Err(format!(
                "bad principal `{principal}`: `key:` names are 1-64 characters of [a-z0-9-]"
            ))
        };
    }
    if let Some(id) = principal.strip_prefix("partner:") {
        return match partners {
            Some(p) if !p.contains_key(id) => Err(unknown_partner(id)),
            _ => Ok(()),
        };
    }
    Err(format!(
        "an API key stands for `key:<name>` or `partner:<id>`, not `{principal}`"
    ))
}

fn is_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// Exactly 64 lowercase hex digits.
fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

pub(super) fn issuers(
    docs: &Docs<'_>,
    dir: &Path,
    errors: &mut Vec<LoadError>,
) -> Option<BTreeMap<String, Issuer>> {
    let (doc, file) = docs.parse::<IssuersFile>("issuers.toml", errors)?;
    let mut seen = BTreeMap::new();
    let mut issuers = BTreeMap::new();
    for raw in file.issuer {
        if let Some(first) = first_definition(&mut seen, raw.iss.get_ref(), doc.at(&raw.iss)) {
            errors.push(doc.error(&raw.iss, duplicate("issuer", raw.iss.get_ref(), &first)));
            continue;
        }
        let issuer = issuer(&doc, dir, raw, errors);
        issuers.insert(issuer.iss.clone(), issuer);
    }
    Some(issuers)
}

fn issuer(doc: &Doc<'_>, dir: &Path, raw: RawIssuer, errors: &mut Vec<LoadError>) -> Issuer {
    let iss = raw.iss.get_ref();
    // `#` separates issuer and subject in `jwt:<iss>#<sub>`.
    if iss.is_empty() || iss.contains('#') || iss.chars().any(char::is_whitespace) {
        errors.push(doc.error(&raw.iss, "iss must be non-empty, without `#` or whitespace"));
    }
    let audiences = raw.audiences.get_ref();
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        errors.push(doc.error(
            &raw.audiences,
            "audiences must list at least one non-empty `aud`",
        ));
    }
    let algorithms = algorithms(doc, &raw.algorithms, errors);
    let leeway_secs = leeway(doc, raw.leeway_secs.as_ref(), errors);
    let jwks_file = jwks_file(doc, dir, &raw.jwks_file, errors);
    Issuer {
        iss: raw.iss.into_inner(),
        audiences: raw.audiences.into_inner(),
        jwks_file,
        algorithms,
        leeway_secs,
    }
}

fn algorithms(
    doc: &Doc<'_>,
    raw: &Spanned<Vec<Spanned<String>>>,
    errors: &mut Vec<LoadError>,
) -> Vec<JwtAlgorithm> {
    if raw.get_ref().is_empty() {
        errors.push(doc.error(
            raw,
            "algorithms must list at least one of EdDSA, ES256, RS256",
        ));
    }
    let mut out = Vec::new();
    for name in raw.get_ref() {
        match name.get_ref().as_str() {
            "EdDSA" => out.push(JwtAlgorithm::EdDsa),
            "ES256" => out.push(JwtAlgorithm::Es256),
            "RS256" => out.push(JwtAlgorithm::Rs256),
            other => {
                let message = format!(
                    "algorithm `{other}` is not allowed (only EdDSA, ES256, RS256; never none or HS*)"
                );
                errors.push(doc.error(name, message));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn leeway(doc: &Doc<'_>, raw: Option<&Spanned<u64>>, errors: &mut Vec<LoadError>) -> u64 {
    match raw {
        None => DEFAULT_LEEWAY_SECS,
        Some(secs) if *secs.get_ref() > MAX_LEEWAY_SECS => {
            errors.push(doc.error(
                secs,
                format!("leeway_secs must be at most {MAX_LEEWAY_SECS}"),
            ));
            *secs.get_ref()
        }
        Some(secs) => *secs.get_ref(),
    }
}

/// The JWKS path, relative ones resolved against the policy directory; it must hold a JSON
/// object with a `keys` array (RFC 7517 §5; the JWT verifier reads the keys themselves).
fn jwks_file(
    doc: &Doc<'_>,
    dir: &Path,
    raw: &Spanned<String>,
    errors: &mut Vec<LoadError>,
) -> PathBuf {
    let path = dir.join(raw.get_ref());
    let problem = match std::fs::read(&path) {
        Err(e) => Some(format!("cannot read JWKS file {}: {e}", path.display())),
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(set) if set.get("keys").is_some_and(serde_json::Value::is_array) => None,
            Ok(_) => Some(format!("JWKS file {} has no `keys` array", path.display())),
            Err(e) => Some(format!("JWKS file {} is not JSON: {e}", path.display())),
        },
    };
    if let Some(message) = problem {
        errors.push(doc.error(raw, message));
    }
    path
}

/// Whether a binding may name `principal`: it must exist in this set.
pub(super) fn check_principal(principal: &str, known: &Known<'_>) -> Result<(), String> {
    if principal == ANONYMOUS {
        return Ok(());
    }
    if let Some(id) = principal.strip_prefix("partner:") {
        return match known.partners {
            Some(p) if !p.contains_key(id) => Err(unknown_partner(id)),
            _ => Ok(()),
        };
    }
    if principal.starts_with("key:") {
        return match known.api_keys {
            Some(keys) if !keys.values().any(|k| k.principal == principal) => Err(format!(
                "unknown principal `{principal}`: no API key in api_keys.toml stands for it"
            )),
            _ => Ok(()),
        };
    }
    if let Some(rest) = principal.strip_prefix("jwt:") {
        return jwt_principal(rest, known.issuers);
    }
    Err(format!(
        "unknown principal `{principal}`: expected anonymous, partner:<id>, key:<name> or jwt:<iss>#<sub>"
    ))
}

fn jwt_principal(rest: &str, issuers: Option<&BTreeMap<String, Issuer>>) -> Result<(), String> {
    let Some((iss, sub)) = rest.split_once('#').filter(|(_, sub)| !sub.is_empty()) else {
        return Err(format!(
            "bad principal `jwt:{rest}`: expected jwt:<iss>#<sub>"
        ));
    };
    match issuers {
        Some(known) if !known.contains_key(iss) => Err(format!(
            "unknown issuer `{iss}` in `jwt:{iss}#{sub}` (not defined in issuers.toml)"
        )),
        _ => Ok(()),
    }
}

fn unknown_partner(id: &str) -> String {
    format!("unknown partner `{id}` (not defined in partners.toml)")
}
