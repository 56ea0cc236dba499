#!/usr/bin/env python3
"""Generate S3 Signature Version 4 test vectors with botocore.

Writes Tests/ObjectStorageTests/Fixtures/botocore-s3-vectors.json: one JSON array of
cases, each signed by botocore's own S3 signers at a fixed, mocked clock
(2026-11-29T12:00:00Z), so the output is deterministic.

  * header mode:  botocore.auth.S3SigV4Auth       (Authorization header)
  * presign mode: botocore.auth.S3SigV4QueryAuth  (presigned URL)

The request URL handed to botocore is built the way botocore's own S3 client builds
it: the object key is percent-encoded with botocore.utils.percent_encode(key, safe="/~")
(the REST serializer's rule for greedy {Key+} labels) and the query string with
botocore.utils.percent_encode_sequence(pairs), except where a case gives a literal
query (e.g. "?uploads"). canonical_request and string_to_sign are the values botocore's
own methods returned inside add_auth() for the request it signed.

Every case is checked before anything is written: signing twice gives identical
output; sha256(canonical_request) is the last line of string_to_sign; the signature is
recomputed with hmac/hashlib (no botocore) from string_to_sign; the canonical request is
rebuilt independently from the URL and headers; and each presigned URL is re-verified
from the URL alone (X-Amz-Signature stripped, canonical request rebuilt, re-signed).

Usage:
  python3 scripts/generate-sigv4-vectors.py            # (re)write the fixture
  python3 scripts/generate-sigv4-vectors.py --check    # exit 1 if the fixture is stale
  python3 scripts/generate-sigv4-vectors.py --output PATH
"""

import argparse
import datetime
import hashlib
import hmac
import json
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qsl, quote, urlsplit

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
FIXED_NOW = datetime.datetime(2026, 11, 29, 12, 0, 0)  # naive UTC, as botocore uses it
DATE = FIXED_NOW.strftime("%Y%m%dT%H%M%SZ")

MINIO = "http://127.0.0.1:9000"
R2 = "https://acc.r2.cloudflarestorage.com"
AWS_VHOST = "https://bucket.s3.us-east-1.amazonaws.com"

DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "Tests/ObjectStorageTests/Fixtures/botocore-s3-vectors.json"
)

RESERVED_KEY = "reserved/!*'()&$@=;:,?#[]~.bin"
UNICODE_KEY = "unicode/caf\u00e9/\u65e5\u672c.txt"  # café (precomposed U+00E9), 日本
LIST_V2_QUERY = [
    ("list-type", "2"),
    ("prefix", "a b"),
    ("continuation-token", "x/y+z"),
    ("delimiter", "/"),
]
COMPLETE_XML = (
    "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
    '<ETag>"etag-1"</ETag></Part></CompleteMultipartUpload>'
)
DISPOSITION = 'attachment; filename="a b.safetensors"'

# Each case: where the request goes and what is on it before signing.
#   endpoint/bucket/key: path-style URL endpoint/bucket/<encoded key>; with
#     vhost=True the bucket is already in the endpoint host: endpoint/<encoded key>.
#     key None means a bucket-level request (URL ends in /bucket, or "/" for vhost).
#   query: list of (name, value) pairs, unencoded, serialized with percent_encode_sequence.
#   raw_query: a literal query string appended as written (used for "?uploads").
#   unsigned_payload: sign with Config(s3={"payload_signing_enabled": False}).
#   context: extra request.context entries (as botocore's handlers would set them).
CASES = [
    # ---- header mode, MinIO (http, path-style, us-east-1): http always signs the body
    dict(name="minio-get-object", endpoint=MINIO, bucket="gomodel",
         key="models/base/config.json"),
    dict(name="minio-get-key-with-spaces", endpoint=MINIO, bucket="gomodel",
         key="datasets/my file  two spaces.txt"),
    dict(name="minio-get-key-with-plus", endpoint=MINIO, bucket="gomodel",
         key="a+b/c+d.bin"),
    dict(name="minio-get-key-unicode", endpoint=MINIO, bucket="gomodel", key=UNICODE_KEY),
    dict(name="minio-get-key-reserved-chars", endpoint=MINIO, bucket="gomodel",
         key=RESERVED_KEY),
    dict(name="minio-get-key-dot-segments", endpoint=MINIO, bucket="gomodel",
         key="runs/../weights/./model.bin"),
    dict(name="minio-get-key-double-slash", endpoint=MINIO, bucket="gomodel",
         key="runs//empty-segment/.."),
    dict(name="minio-get-key-already-percent", endpoint=MINIO, bucket="gomodel",
         key="literal%20percent/100%.txt"),
    dict(name="minio-head-object", method="HEAD", endpoint=MINIO, bucket="gomodel",
         key="models/base/weights.safetensors"),
    dict(name="minio-delete-object", method="DELETE", endpoint=MINIO, bucket="gomodel",
         key="tmp/old checkpoint.bin"),
    dict(name="minio-put-signed-payload", method="PUT", endpoint=MINIO, bucket="gomodel",
         key="uploads/hello.txt", headers=[("Content-Type", "text/plain")],
         body="hello, gomodel\n"),
    dict(name="minio-put-empty-body", method="PUT", endpoint=MINIO, bucket="gomodel",
         key="checkpoints/"),
    dict(name="minio-put-unsigned-payload", method="PUT", endpoint=MINIO, bucket="gomodel",
         key="uploads/big.bin", headers=[("Content-Type", "application/octet-stream")],
         body="not hashed", unsigned_payload=True),
    dict(name="minio-list-objects-v2", endpoint=MINIO, bucket="gomodel", key=None,
         query=LIST_V2_QUERY),
    dict(name="minio-create-multipart-uploads-bare", method="POST", endpoint=MINIO,
         bucket="gomodel", key="big/model.bin", raw_query="uploads"),
    dict(name="minio-create-multipart-uploads-equals", method="POST", endpoint=MINIO,
         bucket="gomodel", key="big/model.bin", raw_query="uploads="),
    dict(name="minio-upload-part", method="PUT", endpoint=MINIO, bucket="gomodel",
         key="big/model.bin", query=[("partNumber", "2"), ("uploadId", "abc")],
         body="part-2-bytes"),
    dict(name="minio-complete-multipart-upload", method="POST", endpoint=MINIO,
         bucket="gomodel", key="big/model.bin", query=[("uploadId", "abc")],
         headers=[("Content-Type", "application/xml")], body=COMPLETE_XML),
    dict(name="minio-abort-multipart-upload", method="DELETE", endpoint=MINIO,
         bucket="gomodel", key="big/model.bin", query=[("uploadId", "abc")]),
    dict(name="minio-get-with-extra-headers", endpoint=MINIO, bucket="gomodel",
         key="models/base/config.json",
         headers=[("Range", "bytes=0-99"), ("If-None-Match", '"abc"'),
                  ("X-Amz-Meta-Note", "  two  spaces  inside  ")]),
    # ---- header mode, Cloudflare R2 (https, path-style, region "auto")
    dict(name="r2-get-object", region="auto", endpoint=R2, bucket="bucket",
         key="models/base/config.json"),
    dict(name="r2-get-key-unicode-space-plus-tilde", region="auto", endpoint=R2,
         bucket="bucket", key="\u65e5\u672c \u8a9e/caf\u00e9+~v1.safetensors"),
    dict(name="r2-get-key-reserved-chars", region="auto", endpoint=R2, bucket="bucket",
         key=RESERVED_KEY),
    dict(name="r2-head-object", method="HEAD", region="auto", endpoint=R2,
         bucket="bucket", key="a b+c.bin"),
    dict(name="r2-delete-object", method="DELETE", region="auto", endpoint=R2,
         bucket="bucket", key="runs/../x.bin"),
    dict(name="r2-put-signed-payload", method="PUT", region="auto", endpoint=R2,
         bucket="bucket", key="uploads/hello.json",
         headers=[("Content-Type", "application/json")], body='{"ok": true}'),
    dict(name="r2-put-unsigned-payload", method="PUT", region="auto", endpoint=R2,
         bucket="bucket", key="uploads/model weights.bin",
         headers=[("Content-Type", "application/octet-stream")],
         body="streamed, not hashed", unsigned_payload=True),
    dict(name="r2-list-objects-v2", region="auto", endpoint=R2, bucket="bucket",
         key=None, query=LIST_V2_QUERY),
    dict(name="r2-create-multipart-uploads", method="POST", region="auto", endpoint=R2,
         bucket="bucket", key="big/model.bin", raw_query="uploads"),
    dict(name="r2-upload-part-unsigned", method="PUT", region="auto", endpoint=R2,
         bucket="bucket", key="big/model.bin",
         query=[("partNumber", "2"), ("uploadId", "abc")], body="part-2-bytes",
         unsigned_payload=True),
    # ---- header mode, AWS virtual-hosted (https, us-east-1)
    dict(name="aws-vhost-get-object", endpoint=AWS_VHOST, vhost=True, bucket="bucket",
         key="models/caf\u00e9 \u65e5\u672c/weights+v1.bin"),
    dict(name="aws-vhost-list-objects-v2", endpoint=AWS_VHOST, vhost=True,
         bucket="bucket", key=None, query=LIST_V2_QUERY),
    dict(name="aws-vhost-put-streaming-with-checksum", method="PUT", endpoint=AWS_VHOST,
         vhost=True, bucket="bucket", key="uploads/data.bin",
         headers=[("Content-Type", "application/octet-stream"),
                  ("x-amz-checksum-crc32", "2cLpHg=="),
                  ("x-amz-sdk-checksum-algorithm", "CRC32")],
         body="some data",
         context={"has_streaming_input": True,
                  "checksum": {"request_algorithm": {"in": "header",
                                                     "name": "x-amz-checksum-crc32",
                                                     "algorithm": "crc32"}}}),
    # ---- presign mode (S3SigV4QueryAuth: payload is always UNSIGNED-PAYLOAD)
    dict(name="presign-minio-get-900", mode="presign", expires=900, endpoint=MINIO,
         bucket="gomodel", key="datasets/my file.txt"),
    dict(name="presign-minio-get-disposition-604800", mode="presign", expires=604800,
         endpoint=MINIO, bucket="gomodel", key="models/a b.safetensors",
         query=[("response-content-disposition", DISPOSITION)]),
    dict(name="presign-minio-put-content-type-length", mode="presign", expires=900,
         method="PUT", endpoint=MINIO, bucket="gomodel", key="uploads/image.png",
         headers=[("Content-Type", "image/png"), ("Content-Length", "1048576")]),
    dict(name="presign-minio-upload-part", mode="presign", expires=3600, method="PUT",
         endpoint=MINIO, bucket="gomodel", key="big/model.bin",
         query=[("partNumber", "2"), ("uploadId", "abc")]),
    dict(name="presign-minio-create-multipart-uploads-bare", mode="presign", expires=900,
         method="POST", endpoint=MINIO, bucket="gomodel", key="big/model.bin",
         raw_query="uploads"),
    dict(name="presign-minio-get-reserved-chars", mode="presign", expires=900,
         endpoint=MINIO, bucket="gomodel", key=RESERVED_KEY),
    dict(name="presign-r2-get-900", mode="presign", expires=900, region="auto",
         endpoint=R2, bucket="bucket", key="models/base/config.json"),
    dict(name="presign-r2-get-unicode-604800", mode="presign", expires=604800,
         region="auto", endpoint=R2, bucket="bucket", key=UNICODE_KEY),
    dict(name="presign-r2-put-content-type-length", mode="presign", expires=900,
         method="PUT", region="auto", endpoint=R2, bucket="bucket",
         key="uploads/model weights+v2.safetensors",
         headers=[("Content-Type", "application/octet-stream"),
                  ("Content-Length", "5368709120")]),
    dict(name="presign-r2-get-disposition", mode="presign", expires=604800,
         region="auto", endpoint=R2, bucket="bucket", key="exports/a b.safetensors",
         query=[("response-content-disposition", DISPOSITION),
                ("response-content-type", "application/octet-stream")]),
    dict(name="presign-aws-vhost-get-disposition-900", mode="presign", expires=900,
         endpoint=AWS_VHOST, vhost=True, bucket="bucket", key="models/a b.safetensors",
         query=[("response-content-disposition", DISPOSITION)]),
    dict(name="presign-aws-vhost-put-content-type-length-604800", mode="presign",
         expires=604800, method="PUT", endpoint=AWS_VHOST, vhost=True, bucket="bucket",
         key="uploads/\u65e5\u672c.png",
         headers=[("Content-Type", "image/png"), ("Content-Length", "42")]),
]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def build_url(case):
    if case.get("vhost"):
        url = case["endpoint"] + "/"
    else:
        url = case["endpoint"] + "/" + case["bucket"]
    if case["key"] is not None:
        if not url.endswith("/"):
            url += "/"
        url += percent_encode(case["key"], safe="/~")
    if case.get("raw_query") is not None:
        url += "?" + case["raw_query"]
    elif case.get("query"):
        url += "?" + percent_encode_sequence(case["query"])
    return url


def sign(case):
    """Sign one case with botocore; return (request, auth, creq, sts)."""
    mode = case.get("mode", "header")
    region = case.get("region", "us-east-1")
    creds = Credentials(ACCESS_KEY, SECRET_KEY)
    if mode == "header":
        auth = botocore.auth.S3SigV4Auth(creds, "s3", region)
    else:
        auth = botocore.auth.S3SigV4QueryAuth(creds, "s3", region,
                                              expires=case["expires"])
    body = case.get("body", "")
    request = AWSRequest(method=case.get("method", "GET"), url=build_url(case),
                         data=body.encode("utf-8") if body else b"")
    for name, value in case.get("headers", []):
        request.headers[name] = value
    if case.get("unsigned_payload"):
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    request.context.update(case.get("context", {}))

    captured = {"creq": [], "sts": []}
    orig_creq, orig_sts = auth.canonical_request, auth.string_to_sign

    def canonical_request(req):
        value = orig_creq(req)
        captured["creq"].append(value)
        return value

    def string_to_sign(req, creq):
        value = orig_sts(req, creq)
        captured["sts"].append(value)
        return value

    auth.canonical_request = canonical_request
    auth.string_to_sign = string_to_sign
    with mock.patch.object(botocore.auth, "get_current_datetime",
                           lambda *a, **k: FIXED_NOW):
        auth.add_auth(request)
    assert len(captured["creq"]) == 1 and len(captured["sts"]) == 1, case["name"]
    return request, captured["creq"][0], captured["sts"][0]


# ---------------------------------------------------------------- independent checks
def hmac_signature(sts, region, date=DATE[:8], service="s3"):
    def h(key, msg):
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()
    k = h(("AWS4" + SECRET_KEY).encode("utf-8"), date)
    k = h(h(h(k, region), service), "aws4_request")
    return hmac.new(k, sts.encode("utf-8"), hashlib.sha256).hexdigest()


def host_of(url):
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    return parts.hostname + (f":{parts.port}" if parts.port not in (None, default) else "")


def independent_creq(method, url, headers, payload_hash):
    """S3 canonical request from a URL that is already percent-encoded: path as is
    (no normalisation, no re-encoding); query pairs split on & and =, sorted, as is."""
    parts = urlsplit(url)
    pairs = []
    if parts.query:
        for item in parts.query.split("&"):
            k, _, v = item.partition("=")
            pairs.append((k, v))
    canon_query = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    hdrs = {}
    for name, value in headers:
        hdrs.setdefault(name.lower(), []).append(" ".join(value.split()))
    hdrs.setdefault("host", [host_of(url)])
    names = sorted(hdrs)
    canon_headers = "".join(f"{n}:{','.join(hdrs[n])}\n" for n in names)
    return "\n".join([method, parts.path or "/", canon_query, canon_headers,
                      ";".join(names), payload_hash])


def sts_for(creq, region):
    return "\n".join(["AWS4-HMAC-SHA256", DATE, f"{DATE[:8]}/{region}/s3/aws4_request",
                      hashlib.sha256(creq.encode("utf-8")).hexdigest()])


def verify_presigned_url(url, method, headers, region):
    """Verify a presigned URL from the URL alone: strip X-Amz-Signature, rebuild the
    canonical request from the remaining (still encoded) query, re-sign, compare."""
    base, _, query = url.partition("?")
    items = query.split("&")
    assert items[-1].startswith("X-Amz-Signature="), url
    signature = items[-1].split("=", 1)[1]
    unsigned_url = base + "?" + "&".join(items[:-1])
    params = dict(parse_qsl("&".join(items[:-1]), keep_blank_values=True))
    signed = params["X-Amz-SignedHeaders"].split(";")
    hdrs = [(n, v) for n, v in headers if n.lower() in signed]
    if "host" in signed:
        hdrs.append(("host", host_of(url)))
    creq = independent_creq(method, unsigned_url, hdrs, "UNSIGNED-PAYLOAD")
    assert params["X-Amz-Date"] == DATE
    assert params["X-Amz-Credential"] == f"{ACCESS_KEY}/{DATE[:8]}/{region}/s3/aws4_request"
    return hmac_signature(sts_for(creq, region), region) == signature, creq


def make_entry(case):
    mode = case.get("mode", "header")
    region = case.get("region", "us-east-1")
    url = build_url(case)
    request, creq, sts = sign(case)
    request2, creq2, sts2 = sign(case)  # determinism: same inputs, same everything
    assert (creq, sts, request.url, dict(request.headers)) == (
        creq2, sts2, request2.url, dict(request2.headers)), case["name"]
    assert sts.split("\n")[-1] == hashlib.sha256(creq.encode("utf-8")).hexdigest()
    assert sts == sts_for(creq, region), case["name"]

    given_headers = [[n, v] for n, v in case.get("headers", [])]
    method = case.get("method", "GET")
    expected = {"canonical_request": creq, "string_to_sign": sts}
    entry = {"name": case["name"], "service": "s3", "region": region,
             "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "date": DATE,
             "mode": mode}
    if mode == "presign":
        entry["expires"] = case["expires"]
    entry.update({"method": method, "url": url, "headers": given_headers})

    if mode == "header":
        payload_hash = request.headers["X-Amz-Content-SHA256"]
        authz = request.headers["Authorization"]
        signature = authz.rsplit("Signature=", 1)[1]
        signed_headers = authz.split("SignedHeaders=", 1)[1].split(",", 1)[0]
        signed_list = [(n, v) for n, v in request.headers.items() if n != "Authorization"]
        mine = independent_creq(method, url, signed_list, payload_hash)
        assert mine == creq, (case["name"], mine, creq)
        expected.update({"signature": signature, "authorization": authz,
                         "signed_headers": signed_headers,
                         "headers_after_signing": [[n, v] for n, v in
                                                   request.headers.items()]})
    else:
        payload_hash = "UNSIGNED-PAYLOAD"
        assert "Authorization" not in request.headers
        signature = request.url.rsplit("&X-Amz-Signature=", 1)[1]
        ok, mine = verify_presigned_url(request.url, method, given_headers, region)
        assert ok and mine == creq, (case["name"], mine, creq)
        signed_headers = dict(parse_qsl(urlsplit(request.url).query))["X-Amz-SignedHeaders"]
        expected.update({"signature": signature, "signed_headers": signed_headers,
                         "presigned_url": request.url})
    assert hmac_signature(sts, region) == signature, case["name"]
    assert creq.rsplit("\n", 1)[1] == payload_hash, case["name"]
    body = case.get("body", "")
    if payload_hash != "UNSIGNED-PAYLOAD":
        assert payload_hash == hashlib.sha256(body.encode("utf-8")).hexdigest()
    entry.update({"payload_hash": payload_hash, "body": body})
    # Extras (not needed to sign, handy for testing URL construction):
    entry.update({"bucket": case["bucket"], "key": case["key"],
                  "addressing": "virtual-hosted" if case.get("vhost") else "path"})
    if case.get("unsigned_payload"):
        entry["note"] = ("signed with client config "
                         "s3={'payload_signing_enabled': False}")
    elif case.get("context", {}).get("has_streaming_input"):
        entry["note"] = ("https + x-amz-checksum-crc32 header + streaming input: "
                         "botocore's implicit UNSIGNED-PAYLOAD rule")
    entry["expected"] = expected
    return entry


def render():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    entries = [make_entry(c) for c in CASES]
    return json.dumps(entries, ensure_ascii=False, indent=2) + "\n", len(entries)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the file differs from fresh output")
    args = parser.parse_args()
    text, count = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale (botocore {botocore.__version__})",
                  file=sys.stderr)
            return 1
        print(f"{args.output}: {count} vectors, up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {count} vectors to {args.output} (botocore {botocore.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
