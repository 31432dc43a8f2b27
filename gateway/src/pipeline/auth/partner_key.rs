//! Which of a partner's keys checks a signature (DESIGN §3.5): the version the client names,
//! or else the newest one that is valid now. Both signature schemes choose through here.

use super::AuthFailure;
use crate::policy::model::{PartnerKey, PolicySet};

/// The key of `partner_id` that must verify a signature made at the gateway's `now_unix`.
///
/// A named version must exist and be valid; without one, the newest valid version is taken,
/// and if none is valid the newest key's reason is the refusal.
pub(super) fn choose<'p>(
    policy: &'p PolicySet,
    partner_id: &str,
    version: Option<u32>,
    now_unix: i64,
) -> Result<&'p PartnerKey, AuthFailure> {
    let partner = policy
        .partners
        .get(partner_id)
        .ok_or(AuthFailure::UNKNOWN_PARTNER)?;
    if let Some(version) = version {
        let key = partner.keys.iter().find(|k| k.version == version);
        let key = key.ok_or(AuthFailure::UNKNOWN_PARTNER)?;
        return usable(key, now_unix).map(|()| key);
    }
    let mut newest_refusal = None;
    // Keys are sorted by version, ascending.
    for key in partner.keys.iter().rev() {
        match usable(key, now_unix) {
            Ok(()) => return Ok(key),
            Err(refusal) => newest_refusal = newest_refusal.or(Some(refusal)),
        }
    }
    Err(newest_refusal.unwrap_or(AuthFailure::UNKNOWN_PARTNER))
}

/// Not revoked, and `now` within `[not_before, not_after)`.
fn usable(key: &PartnerKey, now_unix: i64) -> Result<(), AuthFailure> {
    if key.revoked {
        Err(AuthFailure::KEY_REVOKED)
    } else if key.not_after.is_some_and(|end| now_unix >= end) {
        Err(AuthFailure::KEY_EXPIRED)
    } else if key.not_before.is_some_and(|start| now_unix < start) {
        Err(AuthFailure::KEY_NOT_YET_VALID)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{NOW, PARTNER, partner_key, policy_with};
    use super::*;

    fn version(policy: &PolicySet, named: Option<u32>, now: i64) -> Result<u32, AuthFailure> {
        choose(policy, PARTNER, named, now).map(|k| k.version)
    }

    #[test]
    fn unknown_partner_or_version() {
        let policy = policy_with(vec![partner_key(1, 1)]);
        assert_eq!(
            choose(&policy, "other", None, NOW).map(|k| k.version),
            Err(AuthFailure::UNKNOWN_PARTNER)
        );
        assert_eq!(
            version(&policy, Some(2), NOW),
            Err(AuthFailure::UNKNOWN_PARTNER)
        );
        assert_eq!(
            version(&policy_with(vec![]), None, NOW),
            Err(AuthFailure::UNKNOWN_PARTNER)
        );
    }

    #[test]
    fn a_named_version_must_be_valid_now() {
        let mut revoked = partner_key(1, 1);
        revoked.revoked = true;
        let mut expired = partner_key(2, 2);
        expired.not_after = Some(NOW);
        let mut future = partner_key(3, 3);
        future.not_before = Some(NOW + 1);
        let mut current = partner_key(4, 4);
        current.not_before = Some(NOW);
        current.not_after = Some(NOW + 1);
        let policy = policy_with(vec![revoked, expired, future, current]);
        assert_eq!(
            version(&policy, Some(1), NOW),
            Err(AuthFailure::KEY_REVOKED)
        );
        assert_eq!(
            version(&policy, Some(2), NOW),
            Err(AuthFailure::KEY_EXPIRED)
        );
        assert_eq!(version(&policy, Some(2), NOW - 1), Ok(2));
        assert_eq!(
            version(&policy, Some(3), NOW),
            Err(AuthFailure::KEY_NOT_YET_VALID)
        );
        assert_eq!(version(&policy, Some(3), NOW + 1), Ok(3));
        assert_eq!(version(&policy, Some(4), NOW), Ok(4));
    }

    #[test]
    fn without_a_version_the_newest_valid_key() {
        let mut old = partner_key(1, 1);
        old.not_after = Some(NOW + 10);
        let mut new = partner_key(2, 2);
        new.not_before = Some(NOW + 10);
        let policy = policy_with(vec![old, new]);
        assert_eq!(version(&policy, None, NOW), Ok(1));
        assert_eq!(version(&policy, None, NOW + 10), Ok(2));
    }

    #[test]
    fn without_a_valid_key_the_newest_keys_reason() {
        let mut revoked = partner_key(1, 1);
        revoked.revoked = true;
        let mut expired = partner_key(2, 2);
        expired.not_after = Some(NOW);
        assert_eq!(
            version(&policy_with(vec![revoked, expired]), None, NOW),
            Err(AuthFailure::KEY_EXPIRED)
        );
        let mut expired = partner_key(1, 1);
        expired.not_after = Some(NOW);
        let mut revoked = partner_key(2, 2);
        revoked.revoked = true;
        assert_eq!(
            version(&policy_with(vec![expired, revoked]), None, NOW),
            Err(AuthFailure::KEY_REVOKED)
        );
        let mut future = partner_key(1, 1);
        future.not_before = Some(NOW + 1);
        assert_eq!(
            version(&policy_with(vec![future]), None, NOW),
            Err(AuthFailure::KEY_NOT_YET_VALID)
        );
    }
}
