#!/usr/bin/env python3
"""Signs one request with the third-party RFC 9421 library `http-message-signatures` (PyPI),
in the profile of DESIGN §3.6, and prints the headers to send as a JSON object.

The end-to-end tests use it to show that a partner can sign with an off-the-shelf library
instead of photonctl: the gateway must accept what it prints, and refuse it after `--tamper`.

    rfc9421_sign.py KEY_FILE KEYID METHOD URL [BODY_FILE] [--tamper COMPONENT]
                    [--created UNIX] [--expires UNIX] [--nonce NONCE] [--label LABEL]

KEY_FILE  an Ed25519 private key in PEM (PKCS#8, as `photonctl keygen` and
          `openssl genpkey -algorithm ed25519` write it).
KEYID     `<partner>` (the partner's newest valid key) or `<partner>:<version>`.
METHOD    the HTTP method, uppercase.
URL       the absolute URL the caller will send the request to (https://host:port/path?query).
BODY_FILE the request body; when given, `Content-Digest` (sha-256) is added and covered.

Covered components: "@method" "@authority" "@path", "@query" when the URL has a query, and
"content-digest" when a body is given. Parameters: created, keyid, alg="ed25519", nonce,
tag="photondb" (and expires with --expires).

--tamper alters one covered value so that the request the caller sends no longer matches
what was signed (the gateway must answer 401):
  method     the signature covers another method than METHOD
  authority  ... another host
  path       ... another path
  query      ... another query (or one, when URL has none)
  digest     Content-Digest is replaced by the digest of other content (a body of b"" is
             signed when BODY_FILE is absent, so the digest is covered)
  created    `created` is changed in Signature-Input after signing
  nonce      `nonce` is changed in Signature-Input after signing
  keyid      `keyid` is changed in Signature-Input after signing (`<partner>` <-> `<partner>:1`)

Exit codes: 0 printed, 2 bad arguments or key. Tested with http-message-signatures 3.0.0.
"""

import argparse
import base64
import datetime
import hashlib
import json
import re
import secrets
import sys
import urllib.parse

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

TAMPERABLE = ("method", "authority", "path", "query", "digest", "created", "nonce", "keyid")


class Request:
    """The message interface the library signs: method, absolute URL, and a header mapping."""

    def __init__(self, method, url, headers):
        self.method = method
        self.url = url
        self.headers = headers


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("key_file")
    p.add_argument("keyid")
    p.add_argument("method")
    p.add_argument("url")
    p.add_argument("body_file", nargs="?")
    p.add_argument("--tamper", choices=TAMPERABLE)
    p.add_argument("--created", type=int, help="Unix seconds; default now")
    p.add_argument("--expires", type=int, help="Unix seconds; default none")
    p.add_argument("--nonce", help="default: 32 random hex characters")
    p.add_argument("--label", default="pdb")
    return p.parse_args(argv)


def load_key(path):
    with open(path, "rb") as f:
        key = load_pem_private_key(f.read(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def tampered_url(url, what):
    """The URL whose method/authority/path/query the signature will cover instead."""
    parts = urllib.parse.urlsplit(url)
    if what == "authority":
        host = "tampered.example" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=host)
    elif what == "path":
        parts = parts._replace(path=(parts.path or "/") + "x")
    elif what == "query":
        parts = parts._replace(query=(parts.query + "x") if parts.query else "tampered=1")
    return urllib.parse.urlunsplit(parts)


def covered(url, tamper):
    components = ["@method", "@authority", "@path"]
    if urllib.parse.urlsplit(url).query or tamper == "query":
        components.append("@query")
    return components


def edit_param(signature_input, name, change):
    """Rewrites one parameter of the serialized Signature-Input (after signing)."""
    pattern = {
        "created": r";created=(\d+)",
        "nonce": r';nonce="([^"]*)"',
        "keyid": r';keyid="([^"]*)"',
    }[name]
    edited, count = re.subn(pattern, lambda m: change(m.group(1)), signature_input, count=1)
    if count != 1:
        raise ValueError(f"no {name} parameter to tamper with")
    return edited


def other_keyid(keyid):
    partner, _, version = keyid.partition(":")
    return f';keyid="{partner}"' if version else f';keyid="{partner}:1"'


def sign(args):
    key = load_key(args.key_file)
    body = None
    if args.body_file is not None:
        with open(args.body_file, "rb") as f:
            body = f.read()
    elif args.tamper == "digest":
        body = b""
    method = args.method
    url = args.url
    if args.tamper == "method":
        method = "PATCH" if method != "PATCH" else "PUT"
    if args.tamper in ("authority", "path", "query"):
        url = tampered_url(url, args.tamper)

    headers = {}
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={args.keyid: key}),
    )
    created = datetime.datetime.fromtimestamp(
        args.created if args.created is not None else datetime.datetime.now().timestamp(),
        tz=datetime.timezone.utc,
    )
    expires = None
    if args.expires is not None:
        expires = datetime.datetime.fromtimestamp(args.expires, tz=datetime.timezone.utc)
    signer.sign(
        Request(method, url, headers),
        key_id=args.keyid,
        created=created,
        expires=expires,
        nonce=args.nonce if args.nonce is not None else secrets.token_hex(16),
        label=args.label,
        tag="photondb",
        include_alg=True,
        covered_component_ids=covered(args.url, args.tamper),
        body=body,
    )
    return tamper_after_signing(headers_by_name(headers), args.tamper, body)


def headers_by_name(headers):
    wanted = {"signature-input": "Signature-Input", "signature": "Signature", "content-digest": "Content-Digest"}
    return {wanted[k.lower()]: v for k, v in headers.items() if k.lower() in wanted}


def tamper_after_signing(out, tamper, body):
    if tamper == "digest":
        other = hashlib.sha256(body + b"x").digest()
        out["Content-Digest"] = "sha-256=:" + base64.b64encode(other).decode() + ":"
    elif tamper == "created":
        out["Signature-Input"] = edit_param(out["Signature-Input"], "created", lambda v: f";created={int(v) + 1}")
    elif tamper == "nonce":
        out["Signature-Input"] = edit_param(out["Signature-Input"], "nonce", lambda v: f';nonce="{v}x"')
    elif tamper == "keyid":
        out["Signature-Input"] = edit_param(out["Signature-Input"], "keyid", other_keyid)
    return out


def main(argv):
    args = parse_args(argv)
    try:
        out = sign(args)
    except Exception as e:  # a test tool: any failure is exit 2 with the reason
        print(f"rfc9421_sign: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
