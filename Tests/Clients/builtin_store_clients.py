"""Real S3 clients against the built-in store of a running `gomodel serve`.

Run by scripts/store-clients, which starts the server and passes its endpoint and keys in
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and STORE_BUCKET.
boto3: put/get/list/multipart/presigned/copy/delete; awscli: `s3 cp` and `s3 sync`;
rclone: `copy` both ways; and the refusals (wrong signature, expired URL).
"""
import filecmp
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from support import check

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
BUCKET = os.environ["STORE_BUCKET"]
KEY_ID = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def client(secret=SECRET):
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=KEY_ID, aws_secret_access_key=secret,
                        region_name=os.environ["AWS_DEFAULT_REGION"], config=CONFIG)


def http(method, url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def boto3_cases(work):
    s3 = client()
    print("boto3")
    s3.put_object(Bucket=BUCKET, Key="b3/hello world+é.txt", Body=b"hello", ContentType="text/plain")
    got = s3.get_object(Bucket=BUCKET, Key="b3/hello world+é.txt")
    check(got["Body"].read() == b"hello" and got["ContentType"] == "text/plain", "put_object then get_object")
    check(s3.get_object(Bucket=BUCKET, Key="b3/hello world+é.txt", Range="bytes=1-3")["Body"].read() == b"ell", "ranged get_object")

    for index in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"b3/list/{index}.txt", Body=str(index).encode())
    s3.put_object(Bucket=BUCKET, Key="b3/list/sub/x.txt", Body=b"x")
    keys, token = [], None
    while True:
        kwargs = {"Bucket": BUCKET, "Prefix": "b3/list/", "MaxKeys": 2}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        keys += [item["Key"] for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    check(keys == [f"b3/list/{i}.txt" for i in range(5)] + ["b3/list/sub/x.txt"], "list_objects_v2 pages through MaxKeys=2")
    folders = s3.list_objects_v2(Bucket=BUCKET, Prefix="b3/list/", Delimiter="/")
    check([p["Prefix"] for p in folders.get("CommonPrefixes", [])] == ["b3/list/sub/"], "list_objects_v2 with a delimiter")
    paginator = s3.get_paginator("list_objects")
    v1 = [item["Key"] for page in paginator.paginate(Bucket=BUCKET, Prefix="b3/list/", PaginationConfig={"PageSize": 4}) for item in page.get("Contents", [])]
    check(v1 == keys, "list_objects (v1) pages too")

    part = os.urandom(5 * 1024 * 1024)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="b3/multi.bin", ContentType="application/octet-stream")
    parts = []
    for number, body in [(1, part), (2, b"tail")]:
        result = s3.upload_part(Bucket=BUCKET, Key="b3/multi.bin", UploadId=upload["UploadId"], PartNumber=number, Body=body)
        parts.append({"PartNumber": number, "ETag": result["ETag"]})
    listed = s3.list_parts(Bucket=BUCKET, Key="b3/multi.bin", UploadId=upload["UploadId"])
    check([p["PartNumber"] for p in listed["Parts"]] == [1, 2], "list_parts")
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key="b3/multi.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})
    expected_etag = hashlib.md5(hashlib.md5(part).digest() + hashlib.md5(b"tail").digest()).hexdigest() + "-2"
    check(done["ETag"].strip('"') == expected_etag, "multipart ETag is S3's md5-of-md5s-N")
    check(s3.get_object(Bucket=BUCKET, Key="b3/multi.bin")["Body"].read() == part + b"tail", "multipart object reads back")

    big = os.path.join(work, "big.bin")
    with open(big, "wb") as handle:
        handle.write(os.urandom(20 * 1024 * 1024))
    s3.upload_file(big, BUCKET, "b3/upload_file.bin")  # the transfer manager: parallel multipart
    s3.download_file(BUCKET, "b3/upload_file.bin", big + ".back")
    check(filecmp.cmp(big, big + ".back", shallow=False), "upload_file / download_file (transfer manager)")

    url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "b3/presigned.txt", "ContentType": "text/plain"}, ExpiresIn=300)
    status, _, _ = http("PUT", url, b"via presigned put", {"Content-Type": "text/plain"})
    check(status == 200, "presigned PUT with a plain HTTP client")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "b3/presigned.txt"}, ExpiresIn=300)
    status, body, _ = http("GET", url)
    check(status == 200 and body == b"via presigned put", "presigned GET with a plain HTTP client")
    # With nothing configured but what `gomodel storage credentials` prints (its region included):
    # boto3 presigns with Signature Version 2 for us-east-1 by default, and Version 4 for `auto`.
    default = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                           region_name=os.environ["AWS_DEFAULT_REGION"])
    url = default.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "b3/presigned.txt"})
    status, body, _ = http("GET", url)
    check(status == 200 and body == b"via presigned put", f"boto3's default presigned GET works ({status}, region {os.environ['AWS_DEFAULT_REGION']})")

    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "b3/presigned.txt"}, ExpiresIn=1)
    answers, deadline = [], time.time() + 10
    while time.time() < deadline and not (answers and answers[-1][0] == 403):
        if answers:
            time.sleep(0.1)  # polling until it expires
        status, body, _ = http("GET", url)
        answers.append((status, body))
    check(answers[-1][0] == 403 and b"Request has expired" in answers[-1][1] and all(s in (200, 403) for s, _ in answers),
          f"a presigned URL valid 1 s is refused with 403 once it expired ({len(answers)} tries)")

    s3.copy_object(Bucket=BUCKET, Key="b3/copy.txt", CopySource={"Bucket": BUCKET, "Key": "b3/hello world+é.txt"})
    check(s3.get_object(Bucket=BUCKET, Key="b3/copy.txt")["Body"].read() == b"hello", "copy_object")

    deleted = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "b3/copy.txt"}, {"Key": "b3/presigned.txt"}]})
    check(sorted(d["Key"] for d in deleted["Deleted"]) == ["b3/copy.txt", "b3/presigned.txt"], "delete_objects")
    try:
        s3.head_object(Bucket=BUCKET, Key="b3/copy.txt")
        raise AssertionError("a deleted object is still there")
    except ClientError as error:
        check(error.response["Error"]["Code"] == "404", "head_object of a deleted key is 404")

    try:
        client(secret="not-the-secret").put_object(Bucket=BUCKET, Key="b3/nope.txt", Body=b"x")
        raise AssertionError("a wrong secret was accepted")
    except ClientError as error:
        check(error.response["Error"]["Code"] == "SignatureDoesNotMatch" and error.response["ResponseMetadata"]["HTTPStatusCode"] == 403,
              "a wrong signature is refused: 403 SignatureDoesNotMatch")


def run(*command, env=None):
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def awscli_cases(work):
    print("aws CLI")
    source = os.path.join(work, "tree")
    os.makedirs(os.path.join(source, "target"))
    os.makedirs(os.path.join(source, "control_1"))
    for index in range(12):
        for folder in ("target", "control_1"):
            with open(os.path.join(source, folder, f"pair {index}.png"), "wb") as handle:
                handle.write(os.urandom(1000 + index))
    with open(os.path.join(source, "big.bin"), "wb") as handle:
        handle.write(os.urandom(17 * 1024 * 1024))
    run("aws", "s3", "cp", os.path.join(source, "big.bin"), f"s3://{BUCKET}/cli/big.bin", "--only-show-errors")
    run("aws", "s3", "cp", f"s3://{BUCKET}/cli/big.bin", os.path.join(work, "big.back"), "--only-show-errors")
    check(filecmp.cmp(os.path.join(source, "big.bin"), os.path.join(work, "big.back"), shallow=False), "aws s3 cp up and down (multipart)")
    run("aws", "s3", "sync", source, f"s3://{BUCKET}/cli/tree/", "--only-show-errors")
    again = run("aws", "s3", "sync", source, f"s3://{BUCKET}/cli/tree/")
    check(again.strip() == "", "a second aws s3 sync uploads nothing")
    back = os.path.join(work, "tree-back")
    run("aws", "s3", "sync", f"s3://{BUCKET}/cli/tree/", back, "--only-show-errors")
    comparison = filecmp.dircmp(source, back)
    check(not comparison.diff_files and not comparison.left_only and not comparison.right_only
          and all(not filecmp.dircmp(os.path.join(source, d), os.path.join(back, d)).diff_files for d in ("target", "control_1")),
          "aws s3 sync up and down gives the same tree")


def rclone_cases(work):
    print("rclone")
    env = dict(os.environ, RCLONE_CONFIG_GM_TYPE="s3", RCLONE_CONFIG_GM_PROVIDER="Other", RCLONE_CONFIG_GM_ENDPOINT=ENDPOINT,
               RCLONE_CONFIG_GM_ACCESS_KEY_ID=KEY_ID, RCLONE_CONFIG_GM_SECRET_ACCESS_KEY=SECRET, RCLONE_CONFIG_GM_FORCE_PATH_STYLE="true")
    source = os.path.join(work, "tree")
    run("rclone", "copy", source, f"gm:{BUCKET}/rclone/", env=env)
    back = os.path.join(work, "rclone-back")
    run("rclone", "copy", f"gm:{BUCKET}/rclone/", back, env=env)
    run("rclone", "check", source, back, env=env)
    check(True, "rclone copy up and down, rclone check finds no difference")
    listing = run("rclone", "lsf", "-R", f"gm:{BUCKET}/rclone/", env=env).splitlines()
    check(len([name for name in listing if not name.endswith("/")]) == 25, "rclone lists the 25 files")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as work:
        boto3_cases(work)
        awscli_cases(work)
        rclone_cases(work)
    print("store clients: OK")
    sys.exit(0)
