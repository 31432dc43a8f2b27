//! The loader against the repository's example set and against small directories, one per
//! kind of error, each asserting the exact `file:line`.

use std::path::PathBuf;

use photondb_proto::signing::PublicKey;

use super::*;
use crate::policy::model::{JwtAlgorithm, Permission, ResourcePattern, Segment};

/// Lines 2 and 6 hold the names, 3 and 7 the permissions.
const ROLES: &str = r#"[[role]]
name = "reader"
permissions = ["table.read", "db.list"]

[[role]]
name = "public-reader"
permissions = ["table.read"]
"#;

const PLANS: &str = r#"default_plan = "free"
public_plan = "public"

[[plan]]
name = "free"
rate_per_sec = 10
burst = 20

[[plan]]
name = "public"
rate_per_sec = 5
burst = 5
"#;

/// RFC 8032 test vectors 1 and 2: valid public keys.
const KEY1: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const KEY2: &str = "PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=";
/// KEY1 as SPKI PEM.
const KEY1_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
                        MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n\
                        -----END PUBLIC KEY-----";
/// y = 2: no point of the curve has it.
const OFF_CURVE: &str = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// The identity point: small order.
const WEAK_KEY: &str = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const WEAK_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
                        MCowBQYDK2VwAyEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
                        -----END PUBLIC KEY-----";
/// SHA-256 of "secret".
const SECRET_SHA256: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

/// A directory holding the base set (roles, plans, empty bindings) with `files` added or
/// replacing them; an empty text removes a base file.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        ("roles.toml", ROLES),
        ("plans.toml", PLANS),
        ("bindings.toml", ""),
    ];
    for (name, text) in base.iter().chain(files) {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn load(files: &[(&str, &str)]) -> Result<PolicySet, Vec<LoadError>> {
    load_dir(dir_with(files).path())
}

/// The errors of a directory that must not load, as printed.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load(files) {
        Ok(set) => panic!("loaded: {set:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The one error of a directory, as printed.
fn error(files: &[(&str, &str)]) -> String {
    let mut all = errors(files);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn partner(id: &str, keys: &[&str]) -> String {
    let mut text = format!("[[partner]]\nid = \"{id}\"\n");
    for (i, key) in keys.iter().enumerate() {
        text.push_str(&format!(
            "\n[[partner.key]]\nversion = {}\npublic_key = \"{key}\"\n",
            i + 1
        ));
    }
    text
}

#[test]
fn the_repository_example_set_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let set = load_dir(&dir).expect("policies/ loads");
    let roles: Vec<&str> = set.roles.keys().map(String::as_str).collect();
    assert_eq!(
        roles,
        [
            "admin",
            "cluster-admin",
            "db-owner",
            "public-reader",
            "reader",
            "writer"
        ]
    );
    assert_eq!(
        set.roles["writer"]
            .permissions
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [
            Permission::TableRead,
            Permission::TableWrite,
            Permission::DbList
        ]
    );
    let plans: Vec<&str> = set.plans.keys().map(String::as_str).collect();
    assert_eq!(plans, ["enterprise", "free", "pro", "public"]);
    assert_eq!(set.default_plan, "free");
    assert_eq!(set.public_plan.as_deref(), Some("public"));
    assert!(set.api_keys_enabled);
    assert!(set.partners.is_empty() && set.api_keys.is_empty() && set.issuers.is_empty());
    assert!(set.bindings.is_empty());
    assert_eq!(set.version.len(), 64);
    assert!(
        set.version
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn a_full_set_loads_with_every_kind_of_principal() {
    let jwks = r#"{"keys": []}"#;
    let partners = format!(
        "[[partner]]\nid = \"acme\"\nplan = \"public\"\n\n\
         [[partner.key]]\nversion = 2\npublic_key = \"\"\"\n{KEY1_PEM}\n\"\"\"\nnot_before = \"2026-07-01T00:00:00Z\"\n\n\
         [[partner.key]]\nversion = 1\npublic_key = \"{KEY2}\"\nnot_after = \"2026-07-01T00:00:00Z\"\n\n\
         [[partner]]\nid = \"bob\"\n"
    );
    let api_keys = format!(
        "[[api_key]]\nid = \"ci-bot\"\nsecret_sha256 = \"{SECRET_SHA256}\"\n\n\
         [[api_key]]\nid = \"acme-key\"\nsecret_sha256 = \"{SECRET_SHA256}\"\nprincipal = \"partner:acme\"\nrevoked = true\n"
    );
    let issuers = "[[issuer]]\niss = \"https://idp.example\"\naudiences = [\"photondb\"]\n\
                   jwks_file = \"idp.json\"\nalgorithms = [\"ES256\", \"EdDSA\"]\n";
    let bindings = r#"[[binding]]
principal = "partner:acme"
role = "reader"
resources = ["db:shop", "db:*/table:orders"]

[[binding]]
principal = "key:ci-bot"
role = "reader"
resources = ["*"]

[[binding]]
principal = "jwt:https://idp.example#alice"
role = "reader"
resources = ["db:shop/table:t"]

[[binding]]
principal = "anonymous"
role = "public-reader"
resources = ["db:public/table:*"]
"#;
    let dir = dir_with(&[
        ("partners.toml", partners.as_str()),
        ("api_keys.toml", api_keys.as_str()),
        ("issuers.toml", issuers),
        ("idp.json", jwks),
        ("bindings.toml", bindings),
    ]);
    let set = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));

    let acme = &set.partners["acme"];
    assert_eq!(
        (acme.plan.as_str(), acme.at.as_str()),
        ("public", "partners.toml:2")
    );
    let versions: Vec<u32> = acme.keys.iter().map(|k| k.version).collect();
    assert_eq!(versions, [1, 2], "sorted by version");
    assert_eq!(acme.keys[0].key, PublicKey::from_base64(KEY2).unwrap());
    assert_eq!(
        acme.keys[1].key,
        PublicKey::from_base64(KEY1).unwrap(),
        "PEM decodes"
    );
    assert_eq!(
        (acme.keys[0].not_before, acme.keys[0].not_after),
        (None, Some(1_782_864_000))
    );
    assert_eq!(
        (acme.keys[1].not_before, acme.keys[1].not_after),
        (Some(1_782_864_000), None)
    );
    assert_eq!(set.partners["bob"].plan, "free", "absent plan: the default");

    assert!(set.api_keys_enabled, "a present api_keys.toml enables keys");
    let ci = &set.api_keys["ci-bot"];
    assert_eq!((ci.principal.as_str(), ci.revoked), ("key:ci-bot", false));
    assert_eq!(ci.secret_sha256[..4], [0x2b, 0xb8, 0x0d, 0x53]);
    assert_eq!(set.api_keys["acme-key"].principal, "partner:acme");
    assert!(set.api_keys["acme-key"].revoked);

    let idp = &set.issuers["https://idp.example"];
    assert_eq!(idp.jwks_file, dir.path().join("idp.json"));
    assert_eq!(idp.algorithms, [JwtAlgorithm::EdDsa, JwtAlgorithm::Es256]);
    assert_eq!(idp.leeway_secs, 30);

    let at: Vec<&str> = set.bindings.iter().map(|b| b.at.as_str()).collect();
    assert_eq!(
        at,
        [
            "bindings.toml:2",
            "bindings.toml:7",
            "bindings.toml:12",
            "bindings.toml:17"
        ]
    );
    assert_eq!(
        set.bindings[0].resources,
        [
            ResourcePattern::Db(Segment::Name("shop".into())),
            ResourcePattern::Table(Segment::Any, Segment::Name("orders".into())),
        ]
    );
    assert_eq!(set.version, version(&read_dir(dir.path()).unwrap()));
}

#[test]
fn api_keys_are_disabled_without_the_file_or_when_it_says_so() {
    assert!(!load(&[]).unwrap().api_keys_enabled);
    assert!(
        !load(&[("api_keys.toml", "enabled = false\n")])
            .unwrap()
            .api_keys_enabled
    );
}

#[test]
fn unknown_permission() {
    let roles =
        "[[role]]\nname = \"x\"\npermissions = [\n  \"table.read\",\n  \"table.raed\",\n]\n";
    let got = error(&[("roles.toml", roles)]);
    assert!(
        got.starts_with("roles.toml:5: unknown permission `table.raed` (known: table.read, "),
        "{got}"
    );
}

#[test]
fn unknown_role() {
    let bindings =
        "[[binding]]\nprincipal = \"anonymous\"\nrole = \"nobody\"\nresources = [\"db:p\"]\n";
    assert_eq!(
        error(&[("bindings.toml", bindings)]),
        "bindings.toml:3: unknown role `nobody` (not defined in roles.toml)"
    );
}

#[test]
fn unknown_plan() {
    let partners = "[[partner]]\nid = \"acme\"\nplan = \"gold\"\n";
    assert_eq!(
        error(&[("partners.toml", partners)]),
        "partners.toml:3: unknown plan `gold` (not defined in plans.toml)"
    );
    let plans = PLANS.replace("default_plan = \"free\"", "default_plan = \"gold\"");
    assert_eq!(
        error(&[("plans.toml", plans.as_str())]),
        "plans.toml:1: unknown plan `gold` (not defined in plans.toml)"
    );
    let plans = PLANS.replace("default_plan = \"free\"\n", "");
    assert_eq!(
        error(&[("plans.toml", plans.as_str())]),
        "plans.toml: `default_plan` is missing: the plan of principals that name none"
    );
}

#[test]
fn bindings_to_principals_that_do_not_exist() {
    let bindings = r#"[[binding]]
principal = "partner:ghost"
role = "reader"
resources = ["*"]

[[binding]]
principal = "key:ghost"
role = "reader"
resources = ["*"]

[[binding]]
principal = "jwt:https://nobody#x"
role = "reader"
resources = ["*"]

[[binding]]
principal = "user:x"
role = "reader"
resources = ["*"]

[[binding]]
principal = "jwt:https://nobody"
role = "reader"
resources = ["*"]
"#;
    assert_eq!(
        errors(&[("bindings.toml", bindings)]),
        [
            "bindings.toml:2: unknown partner `ghost` (not defined in partners.toml)",
            "bindings.toml:7: unknown principal `key:ghost`: no API key in api_keys.toml stands for it",
            "bindings.toml:12: unknown issuer `https://nobody` in `jwt:https://nobody#x` (not defined in issuers.toml)",
            "bindings.toml:17: unknown principal `user:x`: expected anonymous, partner:<id>, key:<name> or jwt:<iss>#<sub>",
            "bindings.toml:22: bad principal `jwt:https://nobody`: expected jwt:<iss>#<sub>",
        ]
    );
}

#[test]
fn duplicate_roles_plans_partners_and_versions() {
    let roles = format!("{ROLES}\n[[role]]\nname = \"reader\"\npermissions = []\n");
    assert_eq!(
        error(&[("roles.toml", roles.as_str())]),
        "roles.toml:10: duplicate role `reader` (first defined at roles.toml:2)"
    );
    let plans = format!("{PLANS}\n[[plan]]\nname = \"free\"\nrate_per_sec = 1\nburst = 1\n");
    assert_eq!(
        error(&[("plans.toml", plans.as_str())]),
        "plans.toml:15: duplicate plan `free` (first defined at plans.toml:5)"
    );
    let partners = format!("{}\n{}", partner("acme", &[KEY1]), partner("acme", &[KEY2]));
    assert_eq!(
        error(&[("partners.toml", partners.as_str())]),
        "partners.toml:9: duplicate partner `acme` (first defined at partners.toml:2)"
    );
    let partners = format!(
        "[[partner]]\nid = \"acme\"\n\n[[partner.key]]\nversion = 1\npublic_key = \"{KEY1}\"\nrevoked = true\n\n\
         [[partner.key]]\nversion = 1\npublic_key = \"{KEY2}\"\n"
    );
    assert_eq!(
        error(&[("partners.toml", partners.as_str())]),
        "partners.toml:10: duplicate key version 1 of partner `acme` (first defined at partners.toml:5)"
    );
}

#[test]
fn duplicate_api_keys_and_issuers() {
    let api_keys = format!(
        "[[api_key]]\nid = \"ci\"\nsecret_sha256 = \"{SECRET_SHA256}\"\n\n\
         [[api_key]]\nid = \"ci\"\nsecret_sha256 = \"{SECRET_SHA256}\"\n"
    );
    assert_eq!(
        error(&[("api_keys.toml", api_keys.as_str())]),
        "api_keys.toml:6: duplicate API key `ci` (first defined at api_keys.toml:2)"
    );
    let issuer = "[[issuer]]\niss = \"https://idp\"\naudiences = [\"a\"]\njwks_file = \"k.json\"\nalgorithms = [\"RS256\"]\n";
    let issuers = format!("{issuer}\n{issuer}");
    assert_eq!(
        error(&[
            ("issuers.toml", issuers.as_str()),
            ("k.json", r#"{"keys":[]}"#)
        ]),
        "issuers.toml:8: duplicate issuer `https://idp` (first defined at issuers.toml:2)"
    );
}

#[test]
fn bad_key_encodings() {
    let bad = |key: &str| error(&[("partners.toml", partner("acme", &[key]).as_str())]);
    assert_eq!(
        bad("not base64!"),
        "partners.toml:6: public_key is neither standard base64 of a 32-byte Ed25519 key nor an \
         SPKI PEM block"
    );
    assert_eq!(
        bad("AAAA"),
        "partners.toml:6: public_key is 3 bytes, not the 32 of an Ed25519 key"
    );
    assert_eq!(
        bad(WEAK_KEY),
        "partners.toml:6: public_key is a weak (small-order) Ed25519 key"
    );
    assert_eq!(
        bad(OFF_CURVE),
        "partners.toml:6: public_key is not a point of the Ed25519 curve"
    );
    // Indented PEM (as in a TOML multi-line string) loads.
    let indented = KEY1_PEM.replace('\n', "\n    ");
    let partners = format!(
        "[[partner]]\nid = \"acme\"\n\n[[partner.key]]\nversion = 1\npublic_key = \"\"\"\n    {indented}\n\"\"\"\n"
    );
    let set = load(&[("partners.toml", partners.as_str())]).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        set.partners["acme"].keys[0].key,
        PublicKey::from_base64(KEY1).unwrap()
    );
    let pem = |pem: &str| {
        let partners = format!(
            "[[partner]]\nid = \"acme\"\n\n[[partner.key]]\nversion = 1\npublic_key = \"\"\"\n{pem}\n\"\"\"\n"
        );
        error(&[("partners.toml", partners.as_str())])
    };
    assert_eq!(
        pem(WEAK_PEM),
        "partners.toml:6: public_key is a weak (small-order) Ed25519 key"
    );
    let garbled = KEY1_PEM.replace("MCow", "MCox");
    assert!(
        pem(&garbled)
            .starts_with("partners.toml:6: public_key is not an SPKI PEM Ed25519 public key: "),
        "{}",
        pem(&garbled)
    );
}

#[test]
fn overlapping_validity_of_live_keys() {
    let keys = |v1: &str, v2: &str| {
        format!(
            "[[partner]]\nid = \"acme\"\n\n[[partner.key]]\nversion = 1\npublic_key = \"{KEY1}\"\n{v1}\n\n\
             [[partner.key]]\nversion = 2\npublic_key = \"{KEY2}\"\n{v2}\n"
        )
    };
    let overlap = "partners.toml:10: key versions 1 and 2 of partner `acme` are valid at the same time \
                   (the [not_before, not_after) ranges of non-revoked keys must not overlap)";
    // Both unbounded.
    assert_eq!(error(&[("partners.toml", keys("", "").as_str())]), overlap);
    // One second shared.
    let v1 = "not_after = \"2026-07-01T00:00:01Z\"";
    let v2 = "not_before = \"2026-07-01T00:00:00Z\"";
    assert_eq!(error(&[("partners.toml", keys(v1, v2).as_str())]), overlap);
    // Touching half-open ranges do not overlap; neither does a revoked key.
    let v1 = "not_after = \"2026-07-01T00:00:00Z\"";
    assert!(load(&[("partners.toml", keys(v1, v2).as_str())]).is_ok());
    assert!(load(&[("partners.toml", keys("revoked = true", "").as_str())]).is_ok());
    // An empty range is an error of its own.
    let v1 = "not_before = \"2026-07-01T00:00:00Z\"\nnot_after = \"2026-07-01T00:00:00Z\"";
    assert_eq!(
        error(&[("partners.toml", keys(v1, "revoked = true").as_str())]),
        "partners.toml:8: not_after must be later than not_before"
    );
    let v1 = "not_before = \"2026-07-01\"";
    assert_eq!(
        error(&[("partners.toml", keys(v1, "revoked = true").as_str())]),
        "partners.toml:7: not_before must be YYYY-MM-DDTHH:MM:SSZ (quoted)"
    );
}

#[test]
fn partial_wildcards_are_refused() {
    let bindings = "[[binding]]\nprincipal = \"anonymous\"\nrole = \"public-reader\"\nresources = [\n  \"db:ok\",\n  \"db:a*\",\n]\n";
    assert_eq!(
        error(&[("bindings.toml", bindings)]),
        "bindings.toml:6: `a*` is neither a name ([a-z0-9_-]{1,64}) nor the whole-segment wildcard `*`"
    );
    let bindings =
        "[[binding]]\nprincipal = \"anonymous\"\nrole = \"public-reader\"\nresources = []\n";
    assert_eq!(
        error(&[("bindings.toml", bindings)]),
        "bindings.toml:2: a binding needs at least one resource"
    );
}

#[test]
fn api_key_hashes_are_64_lowercase_hex() {
    let message = "secret_sha256 must be 64 lowercase hex characters (the SHA-256 of the secret)";
    for bad in [
        SECRET_SHA256.to_uppercase(),
        SECRET_SHA256[1..].to_owned(),
        format!("{SECRET_SHA256}0"),
    ] {
        let api_keys = format!("[[api_key]]\nid = \"ci\"\nsecret_sha256 = \"{bad}\"\n");
        assert_eq!(
            error(&[("api_keys.toml", api_keys.as_str())]),
            format!("api_keys.toml:3: {message}")
        );
    }
    let api_keys = format!("[[api_key]]\nid = \"ci_bot\"\nsecret_sha256 = \"{SECRET_SHA256}\"\n");
    assert_eq!(
        error(&[("api_keys.toml", api_keys.as_str())]),
        "api_keys.toml:2: bad API key id `ci_bot`: 1-64 characters of [a-z0-9-]"
    );
}

#[test]
fn anonymous_may_only_read_and_needs_the_public_plan() {
    let bindings =
        "[[binding]]\nprincipal = \"anonymous\"\nrole = \"reader\"\nresources = [\"db:p\"]\n";
    assert_eq!(
        error(&[("bindings.toml", bindings)]),
        "bindings.toml:3: anonymous may only be granted table.read; role `reader` also grants db.list"
    );
    let bindings = "[[binding]]\nprincipal = \"anonymous\"\nrole = \"public-reader\"\nresources = [\"db:p\"]\n";
    let plans = PLANS.replace("public_plan = \"public\"\n", "");
    assert_eq!(
        error(&[("bindings.toml", bindings), ("plans.toml", plans.as_str())]),
        "bindings.toml:2: anonymous bindings need `public_plan` in plans.toml (their shared budget)"
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("policies");
    let errors = load_dir(&missing).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, missing.display().to_string());
    assert_eq!(errors[0].line, None);
    assert!(
        errors[0]
            .message
            .starts_with("cannot read the policy directory: ")
    );
}

#[test]
fn missing_required_files_unknown_files_and_unknown_fields() {
    let dir = dir_with(&[]);
    std::fs::remove_file(dir.path().join("bindings.toml")).unwrap();
    let got: Vec<String> = load_dir(dir.path())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, ["bindings.toml: required policy file is missing"]);

    assert_eq!(
        error(&[("partner.toml", "")]),
        "partner.toml: not a policy file (expected roles.toml, bindings.toml, plans.toml, \
         partners.toml, api_keys.toml, issuers.toml)"
    );
    let roles = "[[role]]\nname = \"x\"\npermissions = []\ncolour = \"red\"\n";
    let got = error(&[("roles.toml", roles)]);
    assert!(
        got.starts_with("roles.toml:4: unknown field `colour`"),
        "{got}"
    );
}

#[test]
fn toml_syntax_and_encoding_errors_have_lines() {
    let got = error(&[("roles.toml", "[[role]]\nname = \"x\"\npermissions = [\n")]);
    assert!(got.starts_with("roles.toml:"), "{got}");
    let dir = dir_with(&[]);
    std::fs::write(dir.path().join("roles.toml"), b"# ok\n\xff\n").unwrap();
    let got: Vec<String> = load_dir(dir.path())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, ["roles.toml:2: not UTF-8"]);
}

#[test]
fn issuers_are_checked() {
    let issuers = "[[issuer]]\niss = \"https://idp\"\naudiences = []\njwks_file = \"missing.json\"\n\
                   algorithms = [\"RS256\", \"HS256\", \"none\"]\nleeway_secs = 3600\n";
    let got = errors(&[("issuers.toml", issuers)]);
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(
        got[0],
        "issuers.toml:3: audiences must list at least one non-empty `aud`"
    );
    assert_eq!(
        got[1],
        "issuers.toml:5: algorithm `HS256` is not allowed (only EdDSA, ES256, RS256; never none or HS*)"
    );
    assert!(got[2].starts_with("issuers.toml:5: algorithm `none` is not allowed"));
    assert_eq!(got[3], "issuers.toml:6: leeway_secs must be at most 300");
    assert!(
        got[4].starts_with("issuers.toml:4: cannot read JWKS file "),
        "{}",
        got[4]
    );
}

/// Every error of every file at once, in a fixed order (roles, plans, partners, API keys,
/// issuers, bindings; file order within each).
#[test]
fn every_error_is_reported_at_once() {
    let roles = format!("{ROLES}\n[[role]]\nname = \"bad\"\npermissions = [\"fly\"]\n");
    let partners = format!(
        "[[partner]]\nid = \"acme\"\nplan = \"gold\"\n\n[[partner.key]]\nversion = 1\npublic_key = \"{WEAK_KEY}\"\n"
    );
    let bindings =
        "[[binding]]\nprincipal = \"partner:acme\"\nrole = \"root\"\nresources = [\"db:a*\"]\n";
    let got = errors(&[
        ("roles.toml", roles.as_str()),
        ("partners.toml", partners.as_str()),
        ("bindings.toml", bindings),
    ]);
    assert_eq!(got.len(), 5, "{got:#?}");
    assert!(
        got[0].starts_with("roles.toml:11: unknown permission `fly`"),
        "{got:#?}"
    );
    assert_eq!(
        got[1],
        "partners.toml:3: unknown plan `gold` (not defined in plans.toml)"
    );
    assert!(
        got[2] == "partners.toml:7: public_key is a weak (small-order) Ed25519 key",
        "{got:#?}"
    );
    assert_eq!(
        got[3],
        "bindings.toml:3: unknown role `root` (not defined in roles.toml)"
    );
    assert!(
        got[4].starts_with("bindings.toml:4: `a*` is neither a name"),
        "{got:#?}"
    );
}

#[test]
fn version_hashes_sorted_names_and_contents() {
    let file = |name: &str, contents: &[u8]| SourceFile {
        name: name.into(),
        contents: contents.to_vec(),
    };
    assert_eq!(
        version(&[file("a", b"x")]),
        "87898619c5d0f3bfb6e8917ff8d8477e56456331d07ec0a674183ca9aad95a93"
    );
    assert_eq!(
        version(&[file("a", b"x"), file("b.toml", b"")]),
        "2f8d2c41469c2b1fc096c3b4a5b4543eb3d05487ec99c9c0cf1ea22c1e53ea30"
    );
    // Hidden files are not part of the set; other files are.
    let dir = dir_with(&[]);
    let before = load_dir(dir.path()).unwrap().version;
    std::fs::write(dir.path().join(".roles.toml.swp"), "junk").unwrap();
    assert_eq!(load_dir(dir.path()).unwrap().version, before);
    std::fs::write(dir.path().join("idp.json"), "{}").unwrap();
    assert_ne!(load_dir(dir.path()).unwrap().version, before);
}

#[test]
fn read_dir_sorts_and_skips_subdirectories() {
    let dir = dir_with(&[]);
    std::fs::create_dir(dir.path().join("sub.toml")).unwrap();
    let names: Vec<String> = read_dir(dir.path())
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["bindings.toml", "plans.toml", "roles.toml"]);
}
