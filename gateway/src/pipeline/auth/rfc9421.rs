//! RFC 9421 HTTP Message Signatures in the profile of DESIGN §3.6, so partners can sign with
//! off-the-shelf libraries and the same Ed25519 keys as the native scheme.
//!
//! Exactly one signature tagged `photondb` counts (others are ignored; two are refused). It
//! must cover `"@method"`, `"@authority"`, `"@path"`, `"@query"` when the request has a query
//! and `"content-digest"` when it has a body; `Content-Digest` (RFC 9530) is checked against
//! the body. The signature base is built per RFC 9421 §2.5 and checked with `verify_strict`.
//! Header parsing is the `sfv` crate's (RFC 8941), never a hand parser.

use std::fmt::Write as _;

use http::HeaderMap;
use photondb_proto::signing::{self, AuthFields, Signature};
use sfv::{Dictionary, FieldType as _, InnerList, Item, List, ListEntry, Parameters};
use sha2::{Digest as _, Sha512};

use super::{AuthFailure, AuthRequest, Authenticated, Principal, Proof, partner_key};
use crate::policy::model::PolicySet;

const SIGNATURE_INPUT: &str = "signature-input";
const SIGNATURE: &str = "signature";
const CONTENT_DIGEST: &str = "content-digest";
/// The `tag` of the one signature the gateway reads.
const TAG: &str = "photondb";
const ALG: &str = "ed25519";
const MAX_NONCE: usize = 128;

const MALFORMED: AuthFailure = AuthFailure::SIGNATURE_MALFORMED;
const INVALID: AuthFailure = AuthFailure::SIGNATURE_INVALID;

/// A covered component this profile understands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    Method,
    Authority,
    Path,
    Query,
    /// A header field, by its lowercase name, without parameters.
    Field(String),
}

impl Component {
    fn parse(item: &Item) -> Result<Self, AuthFailure> {
        let name = item.bare_item.as_string().ok_or(MALFORMED)?.as_str();
        // `;sf`, `;key`, `;bs`, `;req` change what is signed; this profile needs none of them.
        if !item.params.is_empty() {
            return Err(MALFORMED);
        }
        match name {
            "@method" => Ok(Self::Method),
            "@authority" => Ok(Self::Authority),
            "@path" => Ok(Self::Path),
            "@query" => Ok(Self::Query),
            field if is_field_name(field) => Ok(Self::Field(field.to_owned())),
            _ => Err(MALFORMED),
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Method => "@method",
            Self::Authority => "@authority",
            Self::Path => "@path",
            Self::Query => "@query",
            Self::Field(name) => name,
        }
    }

    fn content_digest() -> Self {
        Self::Field(CONTENT_DIGEST.to_owned())
    }
}

/// A lowercase HTTP field name (RFC 9110 token); derived names (`@...`) are not.
fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// The one `photondb` signature of a request, parsed.
#[derive(Debug)]
struct Input {
    components: Vec<Component>,
    /// The `@signature-params` value: the inner list with its parameters, serialized.
    params_line: String,
    created: i64,
    expires: Option<i64>,
    nonce: String,
    partner: String,
    key_version: Option<u32>,
    signature: Signature,
}

/// Step 5: both headers parse as structured fields and hold one well-formed `photondb`
/// signature.
pub(super) fn precheck(headers: &HeaderMap) -> Result<(), AuthFailure> {
    parse(headers).map(|_| ())
}

/// Step 6: the signature covers what it must, the digest matches the body, and a valid key
/// of the partner in `keyid` verifies the signature base.
pub(super) fn authenticate(
    req: &AuthRequest<'_>,
    policy: &PolicySet,
) -> Result<Authenticated, AuthFailure> {
    let input = parse(req.headers)?;
    check_coverage(&input.components, req)?;
    if input.components.contains(&Component::content_digest()) {
        check_content_digest(req)?;
    }
    let key = partner_key::choose(policy, &input.partner, input.key_version, req.now_unix)?;
    let base = signature_base(&input, req)?;
    key.key
        .verify_strict(base.as_bytes(), &input.signature)
        .map_err(|_| INVALID)?;
    let principal = Principal::partner(&input.partner);
    let proof = Proof::Signed {
        partner: input.partner,
        key_version: key.version,
        replay_key: input.nonce,
        signed_at: input.created,
        expires: input.expires,
    };
    Ok(Authenticated::new(principal, proof, req.request_id))
}

fn parse(headers: &HeaderMap) -> Result<Input, AuthFailure> {
    let inputs = dictionary(headers, SIGNATURE_INPUT)?.ok_or(MALFORMED)?;
    let (label, list) = photondb_member(&inputs)?;
    let signatures = dictionary(headers, SIGNATURE)?.ok_or(MALFORMED)?;
    let signature = signature_of(&signatures, label)?;
    let components = components(list)?;
    let params = SignatureParams::parse(&list.params)?;
    let params_line = serialize(list)?;
    Ok(Input {
        components,
        params_line,
        created: params.created,
        expires: params.expires,
        nonce: params.nonce,
        partner: params.partner,
        key_version: params.key_version,
        signature,
    })
}

/// A field's lines joined with `, ` (as HTTP combines them) and parsed as a Dictionary;
/// `None` when the field is absent.
fn dictionary(headers: &HeaderMap, name: &str) -> Result<Option<Dictionary>, AuthFailure> {
    let Some(text) = field_value(headers, name).map_err(|_| MALFORMED)? else {
        return Ok(None);
    };
    let parser = sfv::Parser::new(text.as_str()).with_version(sfv::Version::Rfc8941);
    parser
        .parse::<Dictionary>()
        .map(Some)
        .map_err(|_| MALFORMED)
}

/// Each line of a field trimmed, joined with `, ` (RFC 9421 §2.1); `None` when absent.
fn field_value(
    headers: &HeaderMap,
    name: &str,
) -> Result<Option<String>, http::header::ToStrError> {
    let mut lines = Vec::new();
    for value in headers.get_all(name) {
        lines.push(value.to_str()?.trim());
    }
    Ok((!lines.is_empty()).then(|| lines.join(", ")))
}

/// The one member whose `tag` is `photondb`: others are someone else's signatures.
fn photondb_member(inputs: &Dictionary) -> Result<(&str, &InnerList), AuthFailure> {
    let mut found = None;
    for (label, entry) in inputs {
        let ListEntry::InnerList(list) = entry else {
            continue;
        };
        let tag = list.params.get("tag").and_then(|t| t.as_string());
        if tag.map(|t| t.as_str()) != Some(TAG) {
            continue;
        }
        if found.replace((label.as_str(), list)).is_some() {
            return Err(MALFORMED);
        }
    }
    found.ok_or(AuthFailure::SIGNATURE_MISSING)
}

/// `Signature: <label>=:<base64 of 64 bytes>:`.
fn signature_of(signatures: &Dictionary, label: &str) -> Result<Signature, AuthFailure> {
    let Some(ListEntry::Item(item)) = signatures.get(label) else {
        return Err(MALFORMED);
    };
    let bytes = item.bare_item.as_byte_sequence().ok_or(MALFORMED)?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| MALFORMED)?;
    Ok(Signature::from_bytes(bytes))
}

/// The covered components, each known and each once (RFC 9421 §2.5).
fn components(list: &InnerList) -> Result<Vec<Component>, AuthFailure> {
    let mut components: Vec<Component> = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let component = Component::parse(item)?;
        if components.contains(&component) {
            return Err(MALFORMED);
        }
        components.push(component);
    }
    Ok(components)
}

/// The signature's parameters, checked for type and shape.
struct SignatureParams {
    created: i64,
    expires: Option<i64>,
    nonce: String,
    partner: String,
    key_version: Option<u32>,
}

impl SignatureParams {
    fn parse(params: &Parameters) -> Result<Self, AuthFailure> {
        let integer = |name: &str| params.get(name).map(|v| v.as_integer().map(i64::from));
        let string = |name: &str| params.get(name).map(|v| v.as_string().map(|s| s.as_str()));
        let created = integer("created").flatten().filter(|c| *c >= 0);
        let created = created.ok_or(MALFORMED)?;
        let expires = integer("expires").map(|e| e.ok_or(MALFORMED)).transpose()?;
        let nonce = string("nonce").flatten().filter(|n| is_nonce(n));
        let nonce = nonce.ok_or(MALFORMED)?.to_owned();
        let keyid = string("keyid").flatten().ok_or(MALFORMED)?;
        let (partner, key_version) = parse_keyid(keyid)?;
        match string("alg") {
            None | Some(Some(ALG)) => {}
            Some(_) => return Err(MALFORMED),
        }
        Ok(Self {
            created,
            expires,
            nonce,
            partner,
            key_version,
        })
    }
}

/// 1–128 visible ASCII characters.
fn is_nonce(nonce: &str) -> bool {
    (1..=MAX_NONCE).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_graphic())
}

/// `<partner>` or `<partner>:<version>`.
fn parse_keyid(keyid: &str) -> Result<(String, Option<u32>), AuthFailure> {
    let (partner, version) = match keyid.split_once(':') {
        Some((partner, version)) => (partner, Some(parse_version(version)?)),
        None => (keyid, None),
    };
    // The one rule for a partner id's shape is proto's, behind `AuthFields`.
    const SHAPE_REQUEST_ID: &str = "00000000-0000-0000-0000-000000000000";
    const SHAPE_TIMESTAMP: &str = "1970-01-01T00:00:00Z";
    AuthFields::new(partner, SHAPE_REQUEST_ID, SHAPE_TIMESTAMP).map_err(|_| MALFORMED)?;
    Ok((partner.to_owned(), version))
}

/// A positive decimal integer without sign or leading zeros, as `X-Key-Version`.
fn parse_version(text: &str) -> Result<u32, AuthFailure> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    canonical
        .then(|| text.parse().ok())
        .flatten()
        .ok_or(MALFORMED)
}

/// The inner list and its parameters serialized (RFC 9421 §2.3), parameters in the order
/// received: exactly what a conforming signer put into its signature base.
fn serialize(list: &InnerList) -> Result<String, AuthFailure> {
    let as_list: List = vec![ListEntry::InnerList(list.clone())];
    as_list.serialize().ok_or(MALFORMED)
}

/// The components a signature must cover for this request.
fn check_coverage(components: &[Component], req: &AuthRequest<'_>) -> Result<(), AuthFailure> {
    let covers = |c: Component| components.contains(&c);
    let has_query = req.query.is_some_and(|q| !q.is_empty());
    let covered = covers(Component::Method)
        && covers(Component::Authority)
        && covers(Component::Path)
        && (!has_query || covers(Component::Query))
        && (req.body.is_empty() || covers(Component::content_digest()));
    covered.then_some(()).ok_or(INVALID)
}

/// RFC 9530: every `sha-256` / `sha-512` member must match the body, and one must be there.
fn check_content_digest(req: &AuthRequest<'_>) -> Result<(), AuthFailure> {
    let digests = dictionary(req.headers, CONTENT_DIGEST)?.ok_or(INVALID)?;
    let sha256 = digest_member(&digests, "sha-256")?;
    let sha512 = digest_member(&digests, "sha-512")?;
    if sha256.is_none() && sha512.is_none() {
        return Err(INVALID);
    }
    // The pipeline hashed the body with SHA-256 as it arrived.
    if sha256.is_some_and(|d| signing::lower_hex(d) != req.body_digest.to_hex()) {
        return Err(INVALID);
    }
    if sha512.is_some_and(|d| d != Sha512::digest(req.body).as_slice()) {
        return Err(INVALID);
    }
    Ok(())
}

/// A member of `Content-Digest`: a byte sequence, if present.
fn digest_member<'d>(digests: &'d Dictionary, name: &str) -> Result<Option<&'d [u8]>, AuthFailure> {
    match digests.get(name) {
        None => Ok(None),
        Some(ListEntry::Item(item)) => item.bare_item.as_byte_sequence().map(Some).ok_or(MALFORMED),
        Some(ListEntry::InnerList(_)) => Err(MALFORMED),
    }
}

/// RFC 9421 §2.5: one `"<component>": <value>` line per covered component, then
/// `"@signature-params": <params_line>`, joined by `\n`.
fn signature_base(input: &Input, req: &AuthRequest<'_>) -> Result<String, AuthFailure> {
    let mut base = String::new();
    for component in &input.components {
        let value = component_value(component, req)?;
        let _ = writeln!(base, "\"{}\": {value}", component.name());
    }
    let _ = write!(base, "\"@signature-params\": {}", input.params_line);
    Ok(base)
}

/// A component's value in the request as received.
fn component_value(component: &Component, req: &AuthRequest<'_>) -> Result<String, AuthFailure> {
    Ok(match component {
        Component::Method => req.method.to_ascii_uppercase(),
        Component::Authority => req.host.to_ascii_lowercase(),
        Component::Path => req.path.to_owned(),
        // §2.2.7: `?` alone when there is no query.
        Component::Query => format!("?{}", req.query.unwrap_or("")),
        Component::Field(name) => field_value(req.headers, name)
            .map_err(|_| INVALID)?
            .ok_or(INVALID)?,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use sha2::{Digest as _, Sha256, Sha512};

    use super::super::testkit::{NOW, Tamper, TestRequest, partner_key, policy_with, secret};
    use super::*;

    /// Produced by `tests/python/rfc9421_sign.py` (the PyPI package `http-message-signatures`
    /// 3.0.0) with the key of seed `[7; 32]`:
    /// `rfc9421_sign.py seed7.pem acme:2 PUT
    /// 'https://API.example:8443/v1/dbs/shop/tables/t/docs/k?prefix=a%20b' body.json
    /// --created 1767225600 --nonce 9f1c2b9e4d3a4c8e` with body `{"a":1}`.
    const PY_DIGEST: &str = "sha-256=:AVq9f1zFei3ZS3WQ8ErYCEJzkF7jPsXOvq5iJ2qX+GI=:";
    const PY_INPUT: &str = "pdb=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=1767225600;keyid=\"acme:2\";alg=\"ed25519\";nonce=\"9f1c2b9e4d3a4c8e\";tag=\"photondb\"";
    const PY_SIGNATURE: &str = "pdb=:zeZbitkaqCkdu8tA7ZUZW2Um++TXFv0Q+VE0y7PL1sGWaVwNlCjsYfsJLdnYD8KcTnXtLM0tV+DnnCX1w/OYBQ==:";

    /// The same tool: `acme PUT https://api.example:8443/v1/dbs --created 1767225600
    /// --nonce n-1`, no body.
    const PY_BARE_INPUT: &str = "pdb=(\"@method\" \"@authority\" \"@path\");created=1767225600;keyid=\"acme\";alg=\"ed25519\";nonce=\"n-1\";tag=\"photondb\"";
    const PY_BARE_SIGNATURE: &str = "pdb=:oOwv6XVicYZHQPRvywR0Ejaf6jyIgqpq/L+1ik7thXsNnEms4U1UHVrziqFUELjPvf6cmzzdfi1b7B8ootpTBQ==:";

    fn policy() -> PolicySet {
        policy_with(vec![partner_key(2, 7)])
    }

    fn python_put() -> TestRequest {
        let mut req = TestRequest::new(
            "PUT",
            "API.example:8443",
            "/v1/dbs/shop/tables/t/docs/k",
            Some("prefix=a%20b"),
            b"{\"a\":1}",
        );
        req.set("content-digest", PY_DIGEST);
        req.set("signature-input", PY_INPUT);
        req.set("signature", PY_SIGNATURE);
        req
    }

    fn run(req: &TestRequest) -> Result<Authenticated, AuthFailure> {
        authenticate(&req.as_auth(), &policy())
    }

    fn refusal(req: &TestRequest) -> Option<AuthFailure> {
        run(req).err()
    }

    fn content_digest(body: &[u8]) -> String {
        format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
    }

    fn sha512_digest(body: &[u8]) -> String {
        format!("sha-512=:{}:", STANDARD.encode(Sha512::digest(body)))
    }

    const PARAMS: &str =
        ";created=1767225600;keyid=\"acme:2\";alg=\"ed25519\";nonce=\"n-2\";tag=\"photondb\"";
    const ALL: [&str; 5] = ["@method", "@authority", "@path", "@query", "content-digest"];

    /// A test signer written from RFC 9421 §2.5 independently of the verifier above: signs
    /// `req` under label `pdb` with the seed-7 key, covering `components` with `params`.
    fn sign(req: &mut TestRequest, components: &[&str], params: &str) {
        let quoted: Vec<String> = components.iter().map(|c| format!("\"{c}\"")).collect();
        let params_line = format!("({}){params}", quoted.join(" "));
        let mut lines: Vec<String> = components
            .iter()
            .map(|c| {
                let value = match *c {
                    "@method" => req.method.to_uppercase(),
                    "@authority" => req.host.to_lowercase(),
                    "@path" => req.path.clone(),
                    "@query" => format!("?{}", req.query.as_deref().unwrap_or("")),
                    field => {
                        let lines = req.headers.get_all(field).iter();
                        let lines = lines.map(|v| v.to_str().expect("ascii").trim());
                        lines.collect::<Vec<_>>().join(", ")
                    }
                };
                format!("\"{c}\": {value}")
            })
            .collect();
        lines.push(format!("\"@signature-params\": {params_line}"));
        let signature = secret(7).sign(lines.join("\n").as_bytes());
        req.set("signature-input", &format!("pdb={params_line}"));
        req.set(
            "signature",
            &format!("pdb=:{}:", STANDARD.encode(signature.to_bytes())),
        );
    }

    fn signed_put() -> TestRequest {
        let mut req = TestRequest::put();
        let digest = content_digest(&req.body);
        req.set("content-digest", &digest);
        sign(&mut req, &ALL, PARAMS);
        req
    }

    #[test]
    fn a_third_party_signature_verifies() {
        let req = python_put();
        assert_eq!(precheck(&req.headers), Ok(()));
        let auth = run(&req).expect("signed by http-message-signatures");
        assert_eq!(auth.principal().as_str(), "partner:acme");
        assert_eq!(
            auth.proof(),
            &Proof::Signed {
                partner: "acme".into(),
                key_version: 2,
                replay_key: "9f1c2b9e4d3a4c8e".into(),
                signed_at: NOW,
                expires: None,
            }
        );

        let mut bare = TestRequest::new("PUT", "api.example:8443", "/v1/dbs", None, b"");
        bare.set("signature-input", PY_BARE_INPUT);
        bare.set("signature", PY_BARE_SIGNATURE);
        let auth = run(&bare).expect("newest key, no body");
        assert!(matches!(auth.proof(), Proof::Signed { key_version: 2, .. }));
    }

    #[test]
    fn the_test_signer_agrees_with_the_verifier() {
        let auth = run(&signed_put()).expect("valid");
        assert!(matches!(
            auth.proof(),
            Proof::Signed { replay_key, .. } if replay_key == "n-2"
        ));
    }

    #[test]
    fn each_covered_component_tampered_is_invalid() {
        let tampers: [(&str, Tamper); 7] = [
            ("method", |r| r.method = "POST".into()),
            ("authority", |r| r.host = "api.example:8444".into()),
            ("path", |r| r.path.push('x')),
            ("query", |r| r.query = Some("prefix=a%20c".into())),
            ("body", |r| r.set_body(b"{\"a\":2}")),
            ("digest and body", |r| {
                r.set_body(b"{\"a\":2}");
                r.set("content-digest", &content_digest(b"{\"a\":2}"));
            }),
            ("digest", |r| {
                r.set("content-digest", &content_digest(b"other"))
            }),
        ];
        for (what, tamper) in tampers {
            for mut req in [python_put(), signed_put()] {
                tamper(&mut req);
                assert_eq!(refusal(&req), Some(INVALID), "{what}");
            }
        }
    }

    #[test]
    fn each_signature_parameter_tampered_is_invalid() {
        let edits = [
            ("created=1767225600", "created=1767225601"),
            ("nonce=\"9f1c2b9e4d3a4c8e\"", "nonce=\"9f1c2b9e4d3a4c8f\""),
            ("keyid=\"acme:2\"", "keyid=\"acme\""),
            (";alg=\"ed25519\"", ""),
            (";tag=\"photondb\"", ";tag=\"photondb\";extra=1"),
        ];
        for (from, to) in edits {
            let mut req = python_put();
            req.set("signature-input", &PY_INPUT.replace(from, to));
            assert_eq!(refusal(&req), Some(INVALID), "{from} -> {to}");
        }
        let mut req = python_put();
        req.set("signature-input", &PY_INPUT.replace("\"@query\" ", ""));
        assert_eq!(refusal(&req), Some(INVALID), "component list");
    }

    #[test]
    fn required_components_must_be_covered() {
        for missing in ALL {
            let covered: Vec<&str> = ALL.iter().copied().filter(|c| *c != missing).collect();
            let mut req = signed_put();
            sign(&mut req, &covered, PARAMS);
            assert_eq!(refusal(&req), Some(INVALID), "{missing}");
        }
        // No query and no body: the three are enough; more may be covered.
        let mut req = TestRequest::new("GET", "api.example:8443", "/v1/dbs", None, b"");
        sign(&mut req, &["@method", "@authority", "@path"], PARAMS);
        assert!(run(&req).is_ok());
        req.set("x-extra", " a ");
        req.append("x-extra", "b");
        sign(
            &mut req,
            &["@method", "@authority", "@path", "@query", "x-extra"],
            PARAMS,
        );
        assert!(run(&req).is_ok());
        req.set("x-extra", "c");
        assert_eq!(refusal(&req), Some(INVALID));
    }

    #[test]
    fn a_covered_field_must_be_present() {
        let mut req = signed_put();
        req.headers.remove("content-digest");
        assert_eq!(refusal(&req), Some(INVALID));
    }

    #[test]
    fn content_digest_members() {
        let body = TestRequest::put().body;
        let cases = [
            (sha512_digest(&body), true),
            (
                format!("{}, {}", content_digest(&body), sha512_digest(&body)),
                true,
            ),
            (
                format!("{}, {}", content_digest(&body), sha512_digest(b"x")),
                false,
            ),
            (
                format!("{}, {}", content_digest(b"x"), sha512_digest(&body)),
                false,
            ),
            ("md5=:AAAA:".to_owned(), false),
        ];
        for (digest, ok) in cases {
            let mut req = TestRequest::put();
            req.set("content-digest", &digest);
            sign(&mut req, &ALL, PARAMS);
            assert_eq!(run(&req).is_ok(), ok, "{digest}");
            if !ok {
                assert_eq!(refusal(&req), Some(INVALID), "{digest}");
            }
        }
    }

    #[test]
    fn one_photondb_signature_among_others() {
        let mut req = python_put();
        req.set(
            "signature-input",
            &format!("other=(\"@method\");created=1;tag=\"elsewhere\", {PY_INPUT}"),
        );
        req.set("signature", &format!("other=:AAAA:, {PY_SIGNATURE}"));
        assert!(run(&req).is_ok(), "others are ignored");

        let mut req = python_put();
        req.append("signature-input", &PY_INPUT.replace("pdb=", "pdb2="));
        req.append("signature", &PY_SIGNATURE.replace("pdb=", "pdb2="));
        assert_eq!(precheck(&req.headers), Err(MALFORMED));
        assert_eq!(refusal(&req), Some(MALFORMED));

        let mut req = python_put();
        req.set(
            "signature-input",
            &PY_INPUT.replace("photondb", "elsewhere"),
        );
        assert_eq!(refusal(&req), Some(AuthFailure::SIGNATURE_MISSING));
    }

    #[test]
    fn malformed_inputs() {
        let cases = [
            PY_INPUT.replace("created=1767225600", "created=\"1767225600\""),
            PY_INPUT.replace(";created=1767225600", ""),
            PY_INPUT.replace("created=1767225600", "created=-1"),
            PY_INPUT.replace(";nonce=\"9f1c2b9e4d3a4c8e\"", ""),
            PY_INPUT.replace("9f1c2b9e4d3a4c8e", &"n".repeat(129)),
            PY_INPUT.replace("9f1c2b9e4d3a4c8e", "a b"),
            PY_INPUT.replace("9f1c2b9e4d3a4c8e", ""),
            PY_INPUT.replace("acme:2", "acme:0"),
            PY_INPUT.replace("acme:2", "acme:02"),
            PY_INPUT.replace("acme:2", "ac/me"),
            PY_INPUT.replace("acme:2", ""),
            PY_INPUT.replace(";keyid=\"acme:2\"", ""),
            PY_INPUT.replace("\"ed25519\"", "\"rsa-pss-sha512\""),
            PY_INPUT.replace(";created=1767225600", ";created=1767225600;expires=\"x\""),
            PY_INPUT.replace("\"@path\"", "\"@target-uri\""),
            PY_INPUT.replace("\"@path\"", "\"@path\" \"@path\""),
            PY_INPUT.replace("\"@query\"", "\"@query\";req"),
            PY_INPUT.replace("\"@query\"", "\"Content-Type\""),
            PY_INPUT.replace("\"@query\"", "@query"),
            "pdb=(\"@method\" \"@authority\" \"@path\"".to_owned(),
        ];
        for input in &cases {
            let mut req = python_put();
            req.set("signature-input", input);
            assert_eq!(precheck(&req.headers), Err(MALFORMED), "{input}");
            assert_eq!(refusal(&req), Some(MALFORMED), "{input}");
        }
        let short = format!("pdb=:{}:", STANDARD.encode([0u8; 63]));
        for signature in [
            short.as_str(),
            "pdb=\"text\"",
            "other=:AAAA:",
            "pdb=:not base64:",
        ] {
            let mut req = python_put();
            req.set("signature", signature);
            assert_eq!(refusal(&req), Some(MALFORMED), "{signature}");
        }
        let mut req = python_put();
        req.headers.remove("signature");
        assert_eq!(precheck(&req.headers), Err(MALFORMED));
    }

    #[test]
    fn expires_is_carried_for_the_replay_guard() {
        let mut req = signed_put();
        sign(&mut req, &ALL, &format!("{PARAMS};expires={}", NOW + 30));
        let auth = run(&req).expect("valid");
        assert!(matches!(auth.proof(), Proof::Signed { expires: Some(e), .. } if *e == NOW + 30));
    }

    #[test]
    fn keys_are_chosen_as_for_native_signatures() {
        let mut revoked = partner_key(2, 7);
        revoked.revoked = true;
        let req = python_put();
        assert_eq!(
            authenticate(&req.as_auth(), &policy_with(vec![revoked])).err(),
            Some(AuthFailure::KEY_REVOKED)
        );
        assert_eq!(
            authenticate(&req.as_auth(), &PolicySet::default()).err(),
            Some(AuthFailure::UNKNOWN_PARTNER)
        );
        // Another key under the same version does not verify.
        assert_eq!(
            authenticate(&req.as_auth(), &policy_with(vec![partner_key(2, 8)])).err(),
            Some(INVALID)
        );
    }

    #[test]
    fn a_non_canonical_signature_is_invalid() {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let encoded = PY_SIGNATURE
            .trim_start_matches("pdb=:")
            .trim_end_matches(':');
        let mut bytes: [u8; 64] = STANDARD
            .decode(encoded)
            .expect("base64")
            .try_into()
            .expect("64 bytes");
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(bytes[32 + i]) + u16::from(L[i]) + carry;
            bytes[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        let mut req = python_put();
        req.set("signature", &format!("pdb=:{}:", STANDARD.encode(bytes)));
        assert_eq!(refusal(&req), Some(INVALID));
    }
}
