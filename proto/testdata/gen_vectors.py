#!/usr/bin/env python3
"""Writes signing-vectors.json: the request-signing test vectors of DESIGN §3.2-3.3.

This is a second, independent implementation of the scheme (canonical path check, canonical
query, canonical message, and Ed25519 from RFC 8032 section 6) in plain Python 3 with no
packages, so the Rust implementation in proto/src/signing is checked against something it
did not produce itself.

    python3 proto/testdata/gen_vectors.py > proto/testdata/signing-vectors.json
"""
import base64
import hashlib
import json
import re
import sys

# ---- Ed25519, RFC 8032 section 6 (reference arithmetic; slow, fine for a few vectors) ----
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    A = (y1 - x1) * (y2 - x2) % P
    B = (y1 + x1) * (y2 + x2) % P
    C = t1 * 2 * D * t2 % P
    Dd = z1 * 2 * z2 % P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F % P, G * H % P, F * G % P, E * H % P)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x & 1) != sign:
        x = P - x
    return x


GY = 4 * pow(5, P - 2, P) % P
GX = _recover_x(GY, 0)
G = (GX, GY, 1, GX * GY % P)


def _compress(pt):
    zinv = pow(pt[2], P - 2, P)
    x, y = pt[0] * zinv % P, pt[1] * zinv % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _sha512_int(data):
    return int.from_bytes(hashlib.sha512(data).digest(), "little")


def _expand(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed):
    a, _ = _expand(seed)
    return _compress(_mul(a, G))


def sign(seed, msg):
    a, prefix = _expand(seed)
    pub = _compress(_mul(a, G))
    r = _sha512_int(prefix + msg) % L
    rs = _compress(_mul(r, G))
    h = _sha512_int(rs + pub + msg) % L
    s = (r + h * a) % L
    return rs + int.to_bytes(s, 32, "little")


# ---- The scheme ----
UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
PCHAR_EXTRA = set(b"!$&'()*+,;=:@")


class Refused(Exception):
    pass


def pct_decode(raw, upper_only):
    hexdigits = "0123456789ABCDEF" if upper_only else "0123456789ABCDEFabcdef"
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or any(ch not in hexdigits for ch in pair):
                raise Refused
            out.append((int(pair, 16), True))
            i += 3
        else:
            out.extend((b, False) for b in c.encode())
            i += 1
    return out


def check_path(path):
    # Split on the raw "/" only: an escaped "/" or "\" (%2F, %5C) is text inside its segment.
    if not path.startswith("/"):
        raise Refused("path_not_normal")
    if path == "/":
        return
    for seg in path[1:].split("/"):
        try:
            if not seg or any(b != ord("%") and b not in UNRESERVED and b not in PCHAR_EXTRA for b in seg.encode()):
                raise Refused
            decoded = pct_decode(seg, upper_only=True)
            if any(esc and b in UNRESERVED for b, esc in decoded):
                raise Refused
            text = bytes(b for b, _ in decoded).decode("utf-8")
        except (Refused, UnicodeDecodeError):
            raise Refused("path_not_normal")
        if text in (".", ".."):
            raise Refused("path_not_normal")


def pct_encode(data):
    return "".join(chr(b) if b in UNRESERVED else "%%%02X" % b for b in data)


def canonical_query(raw):
    if raw == "":
        return ""
    pairs = []
    for pair in raw.split("&"):
        name, _, value = pair.partition("=")
        if name == "":
            raise Refused("bad_query")
        try:
            name_b = bytes(b for b, _ in pct_decode(name, upper_only=False))
            value_b = bytes(b for b, _ in pct_decode(value, upper_only=False))
            name_b.decode("utf-8")
            value_b.decode("utf-8")
        except (Refused, UnicodeDecodeError):
            raise Refused("bad_query")
        pairs.append((pct_encode(name_b), pct_encode(value_b)))
    pairs.sort(key=lambda p: (p[0].encode(), p[1].encode()))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise Refused("duplicate_query_param")
    return "&".join(f"{n}={v}" for n, v in pairs)


def canonical(v, body):
    if not re.fullmatch(r"[A-Za-z]+", v["method"]):
        raise Refused("bad_method")
    if not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", v["host"]):
        raise Refused("bad_host")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v["timestamp"]):
        raise Refused("bad_timestamp")
    if not re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", v["partner_id"]):
        raise Refused("bad_partner_id")
    if not re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", v["request_id"]):
        raise Refused("bad_request_id")
    check_path(v["path"])
    query = canonical_query(v["query"])
    return "\n".join([
        "PHOTONDB-ED25519-V1",
        v["method"].upper(),
        v["host"].lower(),
        v["path"],
        query,
        hashlib.sha256(body).hexdigest(),
        v["timestamp"],
        v["partner_id"],
        v["request_id"],
    ])


# ---- The vectors ----
def seed_for(i):
    return hashlib.sha256(b"photondb test vector seed %d" % i).digest()


BASE = dict(method="GET", host="api.photondb.example", path="/v1/dbs", query="", body=b"",
            timestamp="2026-11-23T12:00:00Z", partner_id="acme",
            request_id="6f1c2b9e-4d3a-4c8e-9f0a-1b2c3d4e5f60")

CASES = [
    ("list_databases", {}),
    ("empty_body_get_doc", dict(path="/v1/dbs/shop/tables/orders/docs/order-1")),
    ("put_json_body", dict(method="PUT", path="/v1/dbs/shop/tables/orders/docs/order-1",
                           body=b'{"item":"lamp","qty":2}')),
    ("host_with_port_lowercased", dict(host="API.PhotonDB.example:8443")),
    ("method_lowercase_is_uppercased", dict(method="get")),
    ("scan_query_sorted", dict(path="/v1/dbs/shop/tables/orders/docs", query="limit=10&prefix=ord&after=order-9")),
    ("query_reserved_characters", dict(path="/v1/dbs/shop/tables/t/docs", query="prefix=a%2Fb%3Fc%26d%3De&after=%23x")),
    ("query_plus_stays_plus", dict(path="/v1/dbs/shop/tables/t/docs", query="prefix=a+b&after=c%2Bd")),
    ("query_space_and_lowercase_escape", dict(path="/v1/dbs/shop/tables/t/docs", query="prefix=a%20b&after=%7e%2a")),
    ("query_unicode", dict(path="/v1/dbs/shop/tables/t/docs", query="prefix=%E2%82%AC%F0%9F%98%80&after=caf%C3%A9")),
    ("query_unicode_raw", dict(path="/v1/dbs/shop/tables/t/docs", query="prefix=\u00e9t\u00e9")),
    ("query_empty_value_and_no_equals", dict(path="/v1/dbs/shop/tables/t/docs", query="prefix=&flag")),
    ("query_sort_is_by_encoded_bytes", dict(path="/v1/dbs/shop/tables/t/docs", query="b=1&B=2&a~=3&a.=4&%C3%A9=5")),
    ("path_unicode_key", dict(path="/v1/dbs/shop/tables/orders/docs/caf%C3%A9%20au%20lait")),
    ("path_sub_delims_bare", dict(path="/v1/dbs/shop/tables/orders/docs/a:b@c!$&'()*+,;=")),
    ("path_escaped_reserved", dict(path="/v1/dbs/shop/tables/orders/docs/a%3Fb%23c%25d")),
    ("grpc_put", dict(method="POST", host="storage.photondb.example:443", path="/photondb.v1.Storage/Put",
                      body=bytes.fromhex("0a0d0a0473686f70120661726465727312076f726465722d311a0d7b22717479223a20327d"))),
    ("batch_post", dict(method="POST", path="/v1/dbs/shop/tables/orders/batch",
                        body=b'{"operations":[{"op":"delete","key":"order-1"}]}')),
    ("uppercase_request_id_verbatim", dict(request_id="6F1C2B9E-4D3A-4C8E-9F0A-1B2C3D4E5F60")),
    ("partner_id_with_dots", dict(partner_id="acme.eu-west_1")),
    ("leap_day_timestamp", dict(timestamp="2028-02-29T23:59:59Z")),
    # Refused inputs.
    ("path_dot_segment", dict(path="/v1/dbs/./shop")),
    ("path_dotdot_segment", dict(path="/v1/dbs/../admin")),
    ("path_escaped_dot_segment", dict(path="/v1/dbs/%2E%2E/admin")),
    ("path_empty_segment", dict(path="/v1//dbs")),
    ("path_trailing_slash", dict(path="/v1/dbs/")),
    # Signed as sent since the §3.3 revision; the router then refuses "a/b" as a name (bad_name).
    ("path_escaped_slash", dict(path="/v1/dbs/a%2Fb")),
    ("path_escaped_backslash", dict(path="/v1/dbs/a%5Cb")),
    ("path_lowercase_escape", dict(path="/v1/dbs/caf%c3%a9")),
    ("path_truncated_escape", dict(path="/v1/dbs/abc%4")),
    ("path_non_hex_escape", dict(path="/v1/dbs/abc%G1")),
    ("path_escaped_unreserved", dict(path="/v1/dbs/%41bc")),
    ("path_not_utf8", dict(path="/v1/dbs/%FF%FE")),
    ("path_raw_backslash", dict(path="/v1/dbs/a\\b")),
    ("path_no_leading_slash", dict(path="v1/dbs")),
    ("query_bad_escape", dict(query="prefix=%ZZ")),
    ("query_truncated_escape", dict(query="prefix=a%2")),
    ("query_not_utf8", dict(query="prefix=%C3%28")),
    ("query_empty_pair", dict(query="a=1&&b=2")),
    ("query_empty_name", dict(query="=value")),
    ("query_duplicate_name", dict(query="a=1&b=2&a=3")),
    ("query_duplicate_name_after_decoding", dict(query="a=1&%61=2")),
    ("timestamp_with_fraction", dict(timestamp="2026-11-23T12:00:00.5Z")),
    ("timestamp_with_offset", dict(timestamp="2026-11-23T12:00:00+00:00")),
    ("request_id_not_uuid", dict(request_id="not-a-uuid")),
    ("partner_id_with_newline", dict(partner_id="acme\nGET")),
    ("method_with_space", dict(method="GET /")),
    ("host_with_slash", dict(host="evil.example/x")),
    # Escaped "/" and "\" (DESIGN §3.3 revision): only a key can hold them. Appended, because a
    # vector's seed is its index.
    ("path_key_escaped_slash", dict(method="PUT", path="/v1/dbs/shop/tables/orders/docs/a%2Fb",
                                    body=b'{"n":1}')),
    ("path_key_escaped_backslash", dict(path="/v1/dbs/shop/tables/orders/docs/a%5Cb")),
    ("path_key_escaped_slash_and_backslash", dict(path="/v1/dbs/shop/tables/orders/docs/x%2Fy%5Cz")),
    ("path_key_escaped_slash_around_dots", dict(path="/v1/dbs/shop/tables/orders/docs/..%2F..")),
    # The scheme signs it; the router refuses "or/ders" as a table name (bad_name).
    ("path_table_name_escaped_slash", dict(method="PUT", path="/v1/dbs/shop/tables/or%2Fders")),
    ("path_key_lowercase_escaped_slash", dict(path="/v1/dbs/shop/tables/orders/docs/a%2fb")),
    ("path_key_lowercase_escaped_backslash", dict(path="/v1/dbs/shop/tables/orders/docs/a%5cb")),
    ("path_key_escaped_dotdot", dict(path="/v1/dbs/shop/tables/orders/docs/%2E%2E")),
    ("path_key_half_escaped_dotdot", dict(path="/v1/dbs/shop/tables/orders/docs/.%2E")),
    ("path_key_raw_backslash", dict(path="/v1/dbs/shop/tables/orders/docs/x%2Fy\\z")),
]


def vector(i, name, overrides):
    v = dict(BASE, **overrides)
    body = v.pop("body")
    seed = seed_for(i)
    out = {"name": name,
           "seed": base64.b64encode(seed).decode(),
           "public_key": base64.b64encode(public_key(seed)).decode()}
    out.update({k: v[k] for k in ("method", "host", "path", "query")})
    out["body"] = base64.b64encode(body).decode()
    out.update({k: v[k] for k in ("timestamp", "partner_id", "request_id")})
    try:
        msg = canonical(v, body)
    except Refused as e:
        out["error"] = e.args[0]
        return out
    out["canonical"] = msg
    out["signature"] = base64.b64encode(sign(seed, msg.encode())).decode()
    return out


def main():
    # RFC 8032 test 1 guards the Ed25519 code above.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert public_key(seed).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert sign(seed, b"").hex().startswith("e5564300c360ac729086e2cc806e828a")
    vectors = [vector(i, name, o) for i, (name, o) in enumerate(CASES)]
    json.dump({"vectors": vectors}, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
