//! A partner's key versions: decoding (base64 raw key or SPKI PEM; weak keys refused), validity
//! bounds, unique versions, and no two non-revoked versions valid at the same time (the rule
//! is stated in `load.rs`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use photondb_proto::signing::{PublicKey, Timestamp};
use toml::Spanned;

use super::raw::RawKey;
use super::source::Doc;
use super::{LoadError, first_definition};
use crate::policy::model::PartnerKey;

const WEAK: &str = "public_key is a weak (small-order) Ed25519 key";

/// The valid keys of one partner, sorted by version; every problem is reported.
pub(super) fn partner_keys(
    doc: &Doc<'_>,
    partner: &str,
    raw: Vec<RawKey>,
    errors: &mut Vec<LoadError>,
) -> Vec<PartnerKey> {
    let mut seen = BTreeMap::new();
    let mut keys: Vec<(Spanned<u32>, PartnerKey)> = Vec::new();
    for raw in raw {
        let version = *raw.version.get_ref();
        if version == 0 {
            errors.push(doc.error(&raw.version, "key versions start at 1"));
        }
        let at = doc.at(&raw.version);
        if let Some(first) = first_definition(&mut seen, &version.to_string(), at) {
            let message = format!(
                "duplicate key version {version} of partner `{partner}` (first defined at {first})"
            );
            errors.push(doc.error(&raw.version, message));
            continue;
        }
        if let Some(key) = partner_key(doc, &raw, errors) {
            keys.push((raw.version, key));
        }
    }
    check_overlaps(doc, partner, &keys, errors);
    let mut keys: Vec<PartnerKey> = keys.into_iter().map(|(_, k)| k).collect();
    keys.sort_by_key(|k| k.version);
    keys
}

/// `None` when anything about the key is bad (reported).
fn partner_key(doc: &Doc<'_>, raw: &RawKey, errors: &mut Vec<LoadError>) -> Option<PartnerKey> {
    let key = decode_public_key(raw.public_key.get_ref());
    if let Err(message) = &key {
        errors.push(doc.error(&raw.public_key, message.clone()));
    }
    let not_before = bound(doc, "not_before", raw.not_before.as_ref(), errors);
    let not_after = bound(doc, "not_after", raw.not_after.as_ref(), errors);
    if let (Ok(Some(from)), Ok(Some(until)), Some(at)) = (not_before, not_after, &raw.not_after)
        && from >= until
    {
        errors.push(doc.error(at, "not_after must be later than not_before"));
        return None;
    }
    Some(PartnerKey {
        version: *raw.version.get_ref(),
        key: key.ok()?,
        not_before: not_before.ok()?,
        not_after: not_after.ok()?,
        revoked: raw.revoked,
    })
}

/// A validity bound in Unix seconds; `Err` reported.
fn bound(
    doc: &Doc<'_>,
    field: &str,
    raw: Option<&Spanned<String>>,
    errors: &mut Vec<LoadError>,
) -> Result<Option<i64>, ()> {
    let Some(text) = raw else { return Ok(None) };
    match Timestamp::parse(text.get_ref()) {
        Ok(t) => Ok(Some(t.unix())),
        Err(_) => {
            errors.push(doc.error(
                text,
                format!("{field} must be YYYY-MM-DDTHH:MM:SSZ (quoted)"),
            ));
            Err(())
        }
    }
}

/// Standard base64 of the 32 raw bytes, or an SPKI PEM block; weak keys are refused either
/// way. Accepted by proto's one parser; a refusal is diagnosed here for the message.
pub(super) fn decode_public_key(text: &str) -> Result<PublicKey, String> {
    let text = normalise(text);
    PublicKey::parse(&text).map_err(|_| why_refused(&text))
}

/// TOML multi-line strings may indent a PEM block; PEM wants bare lines.
fn normalise(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().map(str::trim).collect();
    lines.join("\n")
}

fn why_refused(text: &str) -> String {
    let key = if text.starts_with("-----BEGIN") {
        match VerifyingKey::from_public_key_pem(text) {
            Ok(key) => key,
            Err(e) => return format!("public_key is not an SPKI PEM Ed25519 public key: {e}"),
        }
    } else {
        let Ok(bytes) = STANDARD.decode(text) else {
            return "public_key is neither standard base64 of a 32-byte Ed25519 key nor an \
                    SPKI PEM block"
                .to_owned();
        };
        let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            return format!(
                "public_key is {} bytes, not the 32 of an Ed25519 key",
                bytes.len()
            );
        };
        match VerifyingKey::from_bytes(&raw) {
            Ok(key) => key,
            Err(_) => return "public_key is not a point of the Ed25519 curve".to_owned(),
        }
    };
    if key.is_weak() {
        WEAK.to_owned()
    } else {
        "public_key is not a valid Ed25519 public key".to_owned()
    }
}

/// Every pair of non-revoked versions valid at once is an error on the later one's line.
fn check_overlaps(
    doc: &Doc<'_>,
    partner: &str,
    keys: &[(Spanned<u32>, PartnerKey)],
    errors: &mut Vec<LoadError>,
) {
    let live: Vec<&(Spanned<u32>, PartnerKey)> = keys.iter().filter(|(_, k)| !k.revoked).collect();
    for (i, (_, a)) in live.iter().enumerate() {
        for (at, b) in &live[i + 1..] {
            if overlap(a, b) {
                let message = format!(
                    "key versions {} and {} of partner `{partner}` are valid at the same time \
                     (the [not_before, not_after) ranges of non-revoked keys must not overlap)",
                    a.version, b.version
                );
                errors.push(doc.error(at, message));
            }
        }
    }
}

/// Half-open ranges, an absent bound unbounded: they share an instant iff the later start is
/// before the earlier end.
fn overlap(a: &PartnerKey, b: &PartnerKey) -> bool {
    let start = a
        .not_before
        .unwrap_or(i64::MIN)
        .max(b.not_before.unwrap_or(i64::MIN));
    let end = a
        .not_after
        .unwrap_or(i64::MAX)
        .min(b.not_after.unwrap_or(i64::MAX));
    start < end
}
