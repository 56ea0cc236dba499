"""Zip import end to end (issue 17, part 3), with the real binary: a zip goes to the bucket as one
object through a presigned URL and `gomodel serve` unpacks it into the dataset layout.

Usage: python zip_import_e2e.py path/to/gomodel [path/to/rclone]
Checks, against a server with the built-in store (and, given rclone, a shorter round against
`rclone serve s3` as the R2/S3 store):
- good zips (fal's flat naming, folders inside a wrapping folder with __MACOSX litter, fal with only
  some second controls) end as the right samples, controls and captions, byte for byte, through
  `gomodel datasets push X.zip` and through the API alone (create import, PUT, unpack, poll);
  a folder push of the unzipped content afterwards sends nothing (same keys, same SHA-256);
- progress: entriesDone rises while a bigger zip (120 MB, 1500 entries) unpacks (GET polling), and
  the CLI shows it, as a bar on a terminal (a pseudo-terminal here) and as lines in a log;
- bad zips (bombs by ratio, by total and by a lying header, path traversal, a symbolic link, a
  truncated zip, a CRC mismatch, duplicate names, non-images, a path the layout refuses, nothing
  for the dataset) end
  `failed` with the right code and a message naming the problem, through the API and the CLI
  (non-zero exit, the message); nothing is left behind: the dataset's files are those before, the
  bucket holds exactly the objects it held before (the zip object is gone), no stray files;
- another user's dataset or import is 404; unpacking before the upload, twice at once, or after the
  end is a 409; a name that is not .zip or a size out of bounds is a 400; the presigned PUT takes
  only the announced size.
The server runs with GOMODEL_DATASET_MAX_BYTES=256MiB, so that a total over the limit is cheap to
make and the progress zip still fits; the server saves progress about twice a second, and the debug
build takes over a second to check the progress zip's entries (the check needs more than one save).
"""
import hashlib
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import zip_fixtures as fixtures
from support import api_call, check, free_port, own_environment, png, wait_for, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
RCLONE = sys.argv[2] if len(sys.argv) > 2 else None
R2_KEY, R2_SECRET = "GMZIPACCESSKEY0001", "zip-e2e-secret"
DATASET_LIMIT = 256 << 20
# `error` is left out while there is none (as every absent optional field of the API), or null.
IMPORT_FIELDS = {"id", "datasetId", "fileName", "size", "state", "entriesTotal", "entriesDone", "bytesTotal", "bytesWritten", "placed", "ignored",
                 "createdAt", "updatedAt"}
# Files of the data folder that change by themselves; everything else there must be as before.
OWN_FILES = re.compile(r"^(gomodel\.sqlite.*|serve-address|store-credentials\.json)$")


class Server:
    def __init__(self, work, extra_env, bucket_root=None):
        self.work = work
        self.bucket_root = bucket_root  # rclone's folder of the bucket, or None for the built-in store
        self.data = os.path.join(work, "data")
        self.tmp = os.path.join(work, "server-tmp")
        os.makedirs(self.tmp)
        self.env = own_environment()
        self.env.update(extra_env, GOMODEL_DATA_DIR=self.data, XDG_CONFIG_HOME=os.path.join(work, "config"),
                        GOMODEL_DATASET_MAX_BYTES=str(DATASET_LIMIT))
        self.cli_env = dict(self.env, TMPDIR=os.path.join(work, "cli-tmp"))
        os.makedirs(self.cli_env["TMPDIR"])
        self.log = open(os.path.join(work, "serve.log"), "w")
        self.process = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(self.env, TMPDIR=self.tmp), stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.base = wait_serving(self.data, seconds=30)

    def gomodel(self, *args, input=None, timeout=300):
        return subprocess.run([GOMODEL, *args], env=self.cli_env, capture_output=True, text=True, input=input, timeout=timeout)

    def must(self, *args):
        result = self.gomodel(*args)
        if result.returncode != 0:
            raise AssertionError(f"gomodel {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def user(self, email, login=False):
        self.must("users", "create", "--email", email, "--password", "correct horse battery")
        token = self.must("tokens", "create", "--email", email).strip()
        if login:
            self.must("login", "--server", self.base, "--token", token)
        return token

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)

    # MARK: The API

    def api(self, token, method, path, body=None):
        """(status, JSON body or None) of an API call."""
        return api_call(self.base, token, method, path, body)

    def dataset(self, token, dataset_id):
        status, body = self.api(token, "GET", f"/api/datasets/{dataset_id}")
        assert status == 200, f"GET /api/datasets/{dataset_id}: {status} {body}"
        return body

    def create_dataset(self, token, name):
        status, body = self.api(token, "POST", "/api/datasets", {"name": name})
        assert status == 201, f"POST /api/datasets: {status} {body}"
        return body["id"]

    def dataset_id(self, token, name):
        status, body = self.api(token, "GET", "/api/datasets")
        return next(d["id"] for d in body["datasets"] if d["name"] == name)

    # MARK: What is on disk

    def objects(self):
        """Every object in the bucket: key → size (rclone: file sizes; built-in: the object's size
        from its trailer), read from disk."""
        found = {}
        if self.bucket_root:
            for folder, _, names in os.walk(self.bucket_root):
                for name in names:
                    path = os.path.join(folder, name)
                    found[os.path.relpath(path, self.bucket_root)] = os.path.getsize(path)
            return found
        root = os.path.join(self.data, "store", "buckets", "gomodel")
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, root).split(os.sep)
                if not all(p.endswith(".d") for p in parts[:-1]) or not parts[-1].endswith(".o"):
                    found["?stray file " + os.path.relpath(path, root)] = os.path.getsize(path)
                    continue
                key = "/".join(urllib.parse.unquote(p[:-2]) for p in parts)
                found[key] = len(stored_bytes(path))
        return found

    def object_bytes(self, key):
        if self.bucket_root:
            return open(os.path.join(self.bucket_root, key), "rb").read()
        encoded = [urllib.parse.quote(segment, safe="-_.~") for segment in key.split("/")]
        path = os.path.join(self.data, "store", "buckets", "gomodel", *[s + ".d" for s in encoded[:-1]], encoded[-1] + ".o")
        return stored_bytes(path)

    def stray_files(self):
        """Files in the data folder besides the database, the bucket's objects and the server's own;
        plus anything in the server's TMPDIR."""
        found = []
        for folder, _, names in os.walk(self.data):
            relative = os.path.relpath(folder, self.data)
            if relative == os.path.join("store", "buckets") or relative.startswith(os.path.join("store", "buckets") + os.sep):
                continue
            found += [os.path.join(relative, name) for name in names if relative != "." or not OWN_FILES.match(name)]
        for folder, _, names in os.walk(self.tmp):
            found += [os.path.join(folder, name) for name in names]
        return sorted(found)


def stored_bytes(path):
    """An object's bytes in the built-in store: bytes, metadata JSON, then length (8, big-endian) and magic (8)."""
    data = open(path, "rb").read()
    assert data[-8:] == b"GMOBJv1\n", f"{path} is not a built-in store object"
    metadata = int.from_bytes(data[-16:-8], "big")
    return data[: len(data) - 16 - metadata]


def file_rows(dataset):
    return sorted((f["key"], f["bytes"], f.get("sha256")) for f in dataset.get("files") or [])


def expected_keys(fixture):
    """Dataset-relative keys a good fixture must produce, with the SHA-256 of each entry's bytes."""
    keys = {}
    with zipfile.ZipFile(fixture["path"]) as archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or "__MACOSX" in name or os.path.basename(name).startswith("."):
                continue
            base, extension = os.path.splitext(os.path.basename(name))
            extension = extension[1:].lower()
            extension = "jpg" if extension == "jpeg" else extension
            folders = [part.lower() for part in name.split("/")[:-1]]
            if extension == "txt":
                key = f"target/{base}.txt"
            elif "control_2" in folders:
                key = f"control_2/{base}.{extension}"
            elif "control" in folders:
                key = f"control_1/{base}.{extension}"
            elif "target" in folders:
                key = f"target/{base}.{extension}"
            elif base.endswith("_start2"):
                key = f"control_2/{base[:-7]}.{extension}"
            elif base.endswith("_start"):
                key = f"control_1/{base[:-6]}.{extension}"
            elif base.endswith("_end"):
                key = f"target/{base[:-4]}.{extension}"
            else:
                raise AssertionError(f"the test does not know where {name} goes")
            keys[key] = hashlib.sha256(archive.read(info)).hexdigest()
    return keys


class Snapshot:
    """What must be unchanged after a refused import: the dataset's files, the bucket, stray files."""

    def __init__(self, server, token, dataset_id):
        self.server, self.token, self.dataset_id = server, token, dataset_id
        self.files = file_rows(server.dataset(token, dataset_id))
        self.objects = server.objects()
        self.strays = server.stray_files()

    def check_unchanged(self, label):
        files = file_rows(self.server.dataset(self.token, self.dataset_id))
        check(files == self.files, f"{label}: the dataset's files are those before ({len(files)} rows)")
        # The zip object may be deleted just after the import ends: wait for it, with a deadline.
        try:
            wait_for("the bucket back as before", lambda: self.server.objects() == self.objects, 15, interval=0.02)
        except AssertionError:
            now = self.server.objects()
            raise AssertionError(f"{label}: the bucket changed: added {sorted(set(now) - set(self.objects))[:8]}, "
                                 f"removed {sorted(set(self.objects) - set(now))[:8]}")
        check(True, f"{label}: the bucket holds exactly the objects it held before (no zip object, nothing unpacked)")
        try:
            wait_for("no stray files", lambda: self.server.stray_files() == self.strays, 15, interval=0.02)
        except AssertionError:
            raise AssertionError(f"{label}: files left behind: {sorted(set(self.server.stray_files()) - set(self.strays))[:8]}")
        check(True, f"{label}: no file left behind in the data folder or the server's TMPDIR")


# MARK: One import through the API


def create_import(server, token, dataset_id, path, size=None):
    body = {"fileName": os.path.basename(path), "size": os.path.getsize(path) if size is None else size}
    return server.api(token, "POST", f"/api/datasets/{dataset_id}/imports", body)


def put(url, headers, data):
    """PUTs bytes to a presigned URL with exactly the headers given; returns the status."""
    headers = dict(headers)
    if not any(name.lower() == "content-length" for name in headers):
        headers["Content-Length"] = str(len(data))
    request = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def poll_import(server, token, dataset_id, import_id, seconds=180):
    """Reads the import until it ends; returns the last answer and every one seen."""
    seen = []

    def ended():
        status, body = server.api(token, "GET", f"/api/datasets/{dataset_id}/imports/{import_id}")
        assert status == 200, f"GET import: {status} {body}"
        seen.append(body)
        return body if body["state"] in ("done", "failed") else None
    return wait_for(f"import {import_id} to end", ended, seconds, interval=0.02), seen


def api_import(server, token, dataset_id, fixture, label):
    """create → PUT → unpack → poll; checks the answers' shapes on the way. Returns (final, seen, zip key)."""
    path = fixture["path"]
    status, created = create_import(server, token, dataset_id, path)
    check(status == 201, f"{label}: POST imports answers 201 ({status} {created if status != 201 else ''})")
    record, upload = created["import"], created["upload"]
    check(IMPORT_FIELDS <= set(record) and record["state"] == "awaiting_upload" and record["datasetId"].lower() == dataset_id.lower()
          and record["size"] == os.path.getsize(path) and record["fileName"] == os.path.basename(path) and record.get("error") is None,
          f"{label}: the new import is awaiting_upload, with every field")
    check(upload["method"] == "PUT" and upload["url"].startswith("http") and isinstance(upload.get("headers"), dict) and created.get("expiresAt"),
          f"{label}: a presigned PUT with its headers and expiry")
    before = server.objects()
    with open(path, "rb") as f:
        data = f.read()
    status = put(upload["url"], upload["headers"], data)
    check(200 <= status < 300, f"{label}: the zip's PUT to the presigned URL succeeds ({status})")
    added = {key: size for key, size in server.objects().items() if key not in before}
    check(len(added) == 1 and list(added.values()) == [len(data)], f"{label}: the zip is one object in the bucket ({list(added)})")
    zip_key = next(iter(added))
    status, unpacking = server.api(token, "POST", f"/api/datasets/{dataset_id}/imports/{record['id']}/unpack")
    check(status == 202 and unpacking["id"] == record["id"] and unpacking["state"] in ("unpacking", "done", "failed"),
          f"{label}: unpack answers 202 with the import ({status}, {unpacking.get('state') if unpacking else unpacking})")
    final, seen = poll_import(server, token, dataset_id, record["id"])
    return final, seen, zip_key


# MARK: Checks of a good import


def check_good(server, token, dataset_id, fixture, label):
    """The dataset holds exactly the fixture's files, byte for byte, with its captions, and is
    sound unless the fixture is meant to fall short."""
    dataset = server.dataset(token, dataset_id)
    expected = expected_keys(fixture)
    files = {f["key"]: f for f in dataset["files"]}
    check(set(files) == set(expected), f"{label}: the dataset holds exactly the zip's {len(expected)} files under their canonical keys"
          + ("" if set(files) == set(expected) else f" (missing {sorted(set(expected) - set(files))[:5]}, extra {sorted(set(files) - set(expected))[:5]})"))
    wrong = [key for key, digest in expected.items() if hashlib.sha256(server.object_bytes(f"datasets/{dataset_id.lower()}/{key}")).hexdigest() != digest]
    check(not wrong, f"{label}: every stored object is the zip entry byte for byte ({wrong[:3]})")
    unrecorded = [key for key, digest in expected.items() if files[key].get("sha256") != digest]
    check(not unrecorded, f"{label}: each file's row records its SHA-256 ({unrecorded[:3]})")
    captions = {f["stem"]: f.get("caption") for f in dataset["files"] if f["key"].endswith(".txt")}
    check(all(captions.get(stem) == text for stem, text in fixture["captions"].items()), f"{label}: captions read from the .txt files")
    mix = {count["controls"]: count["samples"] for count in dataset["validation"]["controlMix"]}
    check(dataset["sound"] and dataset["sampleCount"] == len(fixture["samples"]) and mix == fixture["control_mix"]
          and dataset["controlsPerSample"] == max(fixture["control_mix"]),
          f"{label}: sound, {dataset['sampleCount']} samples, control images {mix} (count: samples)")
    return dataset


def check_zip_gone(server, zip_key, label):
    wait_for(f"{label}: the zip object deleted", lambda: zip_key not in server.objects(), 15, interval=0.02)
    check(True, f"{label}: the zip object is gone from the bucket")


# MARK: Scenarios


def good_imports(server, token, zips, work, full):
    print("good zips")
    # fal's flat naming, through the CLI, into a new dataset.
    fal = zips["fal"]
    before = server.objects()
    push = server.gomodel("datasets", "push", fal["path"], "--name", "fal zip")
    check(push.returncode == 0, "fal zip: gomodel datasets push X.zip succeeds " + (push.stdout[-300:] + push.stderr[-500:] if push.returncode else ""))
    check("Ready to train: 6 samples (6 samples with 2 control images)" in push.stdout, "fal zip: the CLI prints the validation summary")
    fal_id = server.dataset_id(token, "fal zip")
    check(fal_id.lower() in push.stdout, "fal zip: the CLI names the dataset with its id")
    check_good(server, token, fal_id, fal, "fal zip")
    wanted = {f"datasets/{fal_id.lower()}/{key}" for key in expected_keys(fal)}
    try:
        wait_for("only the dataset's objects added", lambda: set(server.objects()) - set(before) == wanted, 15, interval=0.02)
    except AssertionError:
        raise AssertionError(f"fal zip: the bucket gained {sorted(set(server.objects()) - set(before) - wanted)[:5]} besides the dataset's files")
    check(True, "fal zip: the bucket gained exactly the dataset's objects (the zip object is gone)")
    check(not server.stray_files(), "fal zip: no stray files")

    # The folder layout inside a wrapping folder, through the API alone.
    folder = zips["folder"]
    folder_id = server.create_dataset(token, "folder zip")
    final, seen, zip_key = api_import(server, token, folder_id, folder, "folder zip (API)")
    check(final["state"] == "done" and final.get("error") is None, f"folder zip (API): done ({final['state']}, {final.get('error')})")
    check(final["placed"] == 4 * len(folder["samples"]) and final["ignored"] >= folder["ignored_at_least"]
          and final["entriesDone"] == final["entriesTotal"] and final["bytesWritten"] == final["bytesTotal"] > 0,
          f"folder zip (API): {final['placed']} placed, {final['ignored']} ignored (.DS_Store, __MACOSX), "
          f"{final['entriesDone']}/{final['entriesTotal']} entries, {final['bytesWritten']} bytes")
    check_good(server, token, folder_id, folder, "folder zip (API)")
    check_zip_gone(server, zip_key, "folder zip (API)")
    if full:
        # The same content unzipped and pushed as a folder: nothing to send (same keys and SHA-256).
        unpacked = os.path.join(work, "folder-unzipped")
        with zipfile.ZipFile(folder["path"]) as archive:
            archive.extractall(unpacked)
        again = server.gomodel("datasets", "push", os.path.join(unpacked, "mydata"), "--name", "folder zip")
        summary = (again.stdout.splitlines() or [""])[1:2]
        check(again.returncode == 0 and "Uploaded 0 files" in again.stdout and f"{len(expected_keys(folder))} already there" in again.stdout,
              f"folder zip: a folder push of the unzipped content afterwards sends nothing {summary}")

        # fal's naming in a wrapping folder, only some samples with a second control.
        some = zips["fal-wrapped-some"]
        push = server.gomodel("datasets", "push", some["path"], "--name", "fal some")
        check(push.returncode == 0 and "Ready to train: 6 samples (3 samples with 1 control image, 3 with 2 control images)" in push.stdout,
              "fal zip in a folder, some samples with a second control: imported, summary printed")
        check_good(server, token, server.dataset_id(token, "fal some"), some, "fal zip, some second controls")

        # Into a dataset that already has files: they stay, the zip's are added.
        known = {f["key"] for f in server.dataset(token, fal_id)["files"]}
        more = fixtures.pairs_zip(os.path.join(work, "more.zip"), 3)
        final, _, zip_key = api_import(server, token, fal_id, more, "pairs into the fal dataset")
        check(final["state"] == "done", f"pairs into the fal dataset: done ({final.get('error')})")
        dataset = server.dataset(token, fal_id)
        check(known <= {f["key"] for f in dataset["files"]} and dataset["fileCount"] == len(known) + 9,
              "pairs into the fal dataset: the files there before stay, 9 are added")
        check_zip_gone(server, zip_key, "pairs into the fal dataset")
    return fal_id


def on_terminal(server, *args, timeout=300):
    """Runs the CLI with its standard error on a pseudo-terminal, as a person sees it; returns the
    exit status, standard output, and everything the terminal was sent."""
    master, slave = pty.openpty()
    process = subprocess.Popen([GOMODEL, *args], env=server.cli_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = bytearray()

    def read():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child has closed the terminal
                return
            if not data:
                return
            shown.extend(data)
    reader = threading.Thread(target=read)
    reader.start()
    stdout, _ = process.communicate(timeout=timeout)
    reader.join(timeout=10)
    os.close(master)
    return process.returncode, stdout.decode(), shown.decode(errors="replace")


def unpacking_counts(text):
    """(done, total) of every progress line or redraw about unpacking."""
    return [(int(done), int(total)) for done, total in re.findall(r"(?i)unpack\D*?(\d+)/(\d+)", text)]


def progress(server, token, work):
    print("progress")
    # 1500 entries, 120 MB: over a second of checking on the server (debug build).
    big = fixtures.pairs_zip(os.path.join(work, "progress.zip"), 500, filler=120_000)
    dataset_id = server.create_dataset(token, "progress")
    final, seen, zip_key = api_import(server, token, dataset_id, big, "1500 entries (API)")
    check(final["state"] == "done" and final["placed"] == 1500 and final["entriesTotal"] == 1500 and final["entriesDone"] == 1500,
          f"1500 entries (API): done, 1500 placed ({final['placed']}, {final['entriesDone']}/{final['entriesTotal']}, {final.get('error')})")
    during = [(s["entriesDone"], s["bytesWritten"]) for s in seen if s["state"] == "unpacking"]
    partial = sorted({done for done, _ in during if 0 < done < 1500})
    check(len(partial) >= 1, f"1500 entries (API): entriesDone rises while unpacking ({len(seen)} reads, values between 0 and 1500 seen: {partial[:6]})")
    check(all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(during, during[1:])), "1500 entries (API): entriesDone and bytesWritten never go back")
    writing = sorted({written for done, written in during if done == 1500 and 0 < written < final["bytesTotal"]})
    check(writing, f"1500 entries (API): once every entry is checked, bytesWritten rises while the files go into the dataset ({len(writing)} values between)")
    check(all(s["entriesTotal"] == 1500 for s in seen if s["state"] == "unpacking" and s["entriesDone"] > 0),
          "1500 entries (API): entriesTotal is known while unpacking")
    check_zip_gone(server, zip_key, "1500 entries (API)")

    status, stdout, shown = on_terminal(server, "datasets", "push", big["path"], "--name", "progress terminal")
    counts = unpacking_counts(shown)
    check(status == 0 and "Ready to train: 500 samples" in stdout, f"1500 entries (CLI, terminal): imported, summary printed ({status})")
    check(any(0 < done < total for done, total in counts) and all(total == 1500 for _, total in counts),
          f"1500 entries (CLI, terminal): the unpacking bar moves ({sorted(set(counts))[:8]})")
    check("Writing into the dataset" in shown.split("Unpacking")[-1], "1500 entries (CLI, terminal): then the writing into the dataset is shown")

    push = server.gomodel("datasets", "push", big["path"], "--name", "progress log")
    check(push.returncode == 0 and "Ready to train: 500 samples" in push.stdout, "1500 entries (CLI, log): imported, summary printed")
    lines = [line for line in push.stderr.splitlines() if "Unpacking" in line or "Writing into the dataset" in line]
    check(lines and "Writing into the dataset" in lines[-1] and "done" in lines[-1], f"1500 entries (CLI, log): progress as lines, ending with the writing done ({lines})")


def bad_imports(server, token, zips, dataset_id, names):
    print("bad zips")
    for name in names:
        fixture = zips[name]
        codes = fixture["code"] if isinstance(fixture["code"], tuple) else (fixture["code"],)
        label = f"{name} (API)"
        snapshot = Snapshot(server, token, dataset_id)
        started = time.time()
        final, seen, zip_key = api_import(server, token, dataset_id, fixture, label)
        error = final.get("error") or {}
        check(final["state"] == "failed" and error.get("code") in codes,
              f"{label}: failed with {error.get('code')} in {time.time() - started:.1f} s (expected {'/'.join(codes)}): {error.get('message')}")
        message = error.get("message") or ""
        if fixture.get("entry"):
            check(os.path.basename(fixture["entry"]).lower() in message.lower(), f"{label}: the message names the entry {fixture['entry']}")
        if name.startswith("bomb") and name != "bomb-lying":
            check(final["bytesTotal"] < 64 << 20 and final["bytesWritten"] == 0, f"{label}: refused before inflating it ({final['bytesTotal']} bytes unpacked)")
        snapshot.check_unchanged(label)

        label = f"{name} (CLI)"
        snapshot = Snapshot(server, token, dataset_id)
        push = server.gomodel("datasets", "push", fixture["path"], "--name", "base")
        output = push.stdout + push.stderr
        check(push.returncode != 0 and "Ready to train" not in output, f"{label}: gomodel datasets push exits non-zero ({push.returncode})")
        check(message and message in output, f"{label}: it prints the refusal's message: {output.strip().splitlines()[-1] if output.strip() else ''}")
        snapshot.check_unchanged(label)


def refusals_of_the_api(server, token, other_token, dataset_id, zips, work):
    print("the API's own refusals")
    fal = zips["fal"]
    status, created = create_import(server, token, dataset_id, fal["path"])
    assert status == 201, f"{status} {created}"
    import_id = created["import"]["id"]
    path = f"/api/datasets/{dataset_id}/imports/{import_id}"

    status, body = server.api(token, "POST", path + "/unpack")
    check(status in (409, 422) and body and body.get("error", {}).get("message"),
          f"unpack before the upload: {status} {body.get('error', {}).get('code') if body else ''}: {body.get('error', {}).get('message') if body else ''}")
    status, body = server.api(token, "GET", path)
    check(status == 200 and body["state"] == "awaiting_upload", f"the import still awaits its upload ({body.get('state')})")

    for method, route in [("POST", f"/api/datasets/{dataset_id}/imports"), ("GET", path), ("POST", path + "/unpack")]:
        status, body = server.api(other_token, method, route, {"fileName": "x.zip", "size": 100} if route.endswith("imports") else None)
        check(status == 404, f"another user: {method} {route.replace(dataset_id, '{dataset}').replace(import_id, '{import}')} → 404 ({status})")
    other_dataset = server.create_dataset(other_token, "theirs")
    status, _ = server.api(other_token, "GET", f"/api/datasets/{other_dataset}/imports/{import_id}")
    check(status == 404, f"an import read through another dataset's path → 404 ({status})")
    status, _ = server.api(token, "GET", f"/api/datasets/{dataset_id}/imports/00000000-0000-0000-0000-000000000000")
    check(status == 404, f"an unknown import → 404 ({status})")

    # The presigned URL is for this zip's size: other bytes are refused by the store.
    short = open(fal["path"], "rb").read()[:-100]
    status = put(created["upload"]["url"], {k: v for k, v in created["upload"]["headers"].items() if k.lower() != "content-length"}, short)
    check(status >= 400, f"a PUT of fewer bytes than announced is refused by the store ({status})")

    for body, what in [({"fileName": "pairs.tar", "size": 100}, "a name that is not .zip"), ({"fileName": "x.zip", "size": 0}, "size 0"),
                       ({"fileName": "x.zip", "size": DATASET_LIMIT + 1}, "a size over the dataset limit")]:
        status, answer = server.api(token, "POST", f"/api/datasets/{dataset_id}/imports", body)
        check(status in (400, 422) and (answer or {}).get("error", {}).get("message"),
              f"creating an import with {what} → {status}: {(answer or {}).get('error', {}).get('message')}")

    # Two unpack requests at once: one starts the unpacking, the other is told it has started.
    concurrent = server.create_dataset(token, "concurrent")
    status, created = create_import(server, token, concurrent, fal["path"])
    check(put(created["upload"]["url"], created["upload"]["headers"], open(fal["path"], "rb").read()) == 200, "a zip uploaded for two unpack requests")
    route = f"/api/datasets/{concurrent}/imports/{created['import']['id']}/unpack"
    answers, barrier = [], threading.Barrier(2)

    def ask():
        barrier.wait()
        answers.append(server.api(token, "POST", route)[0])
    askers = [threading.Thread(target=ask) for _ in range(2)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    check(sorted(answers) == [202, 409], f"two unpack requests at once: one 202, one 409 ({sorted(answers)})")
    final, _ = poll_import(server, token, concurrent, created["import"]["id"])
    check(final["state"] == "done", f"… and the import ends done ({final['state']})")

    # An import that has ended cannot be unpacked again.
    final, _, _ = api_import(server, token, dataset_id, zips["traversal"], "an import to end")
    status, body = server.api(token, "POST", f"/api/datasets/{dataset_id}/imports/{final['id']}/unpack")
    check(status == 409 and body.get("error", {}).get("message"), f"unpacking an ended import again → {status}: {body.get('error', {}).get('message')}")


def scenario(name, work, extra_env, bucket_root, zips, full):
    print(name)
    server = Server(work, extra_env, bucket_root)
    try:
        token = server.user("zip@example.com", login=True)
        other_token = server.user("other@example.com")
        # A dataset with files of its own, for the refusals to leave untouched.
        base = os.path.join(work, "base")
        for sub in ("control", "target"):
            os.makedirs(os.path.join(base, sub))
        for stem in ("cat", "dog"):
            open(os.path.join(base, "control", stem + ".png"), "wb").write(png(640, 640))
            open(os.path.join(base, "target", stem + ".png"), "wb").write(png(640, 640))
            open(os.path.join(base, "target", stem + ".txt"), "w").write(f"make the {stem} a watercolour")
        server.must("datasets", "push", base, "--name", "base")
        base_id = server.dataset_id(token, "base")
        base_files = file_rows(server.dataset(token, base_id))

        good_imports(server, token, zips, work, full)
        if full:
            progress(server, token, work)
            bad_imports(server, token, zips, base_id, [
                "bomb", "bomb-ratio", "bomb-lying", "bomb-total", "traversal", "traversal-absolute", "traversal-nested", "symlink",
                "truncated", "corrupt", "duplicate-same", "duplicate-case", "duplicate-extension", "not-image", "not-image-exe", "layout",
                "empty"])
            refusals_of_the_api(server, token, other_token, base_id, zips, work)
        else:
            bad_imports(server, token, zips, base_id, ["bomb", "traversal", "symlink", "truncated", "not-image"])
        check(file_rows(server.dataset(token, base_id)) == base_files, "after every refusal, the base dataset holds its own 6 files and nothing else")
    except Exception:
        server.log.flush()
        print("--- server log", file=sys.stderr)
        print(open(server.log.name).read()[-4000:], file=sys.stderr)
        raise
    finally:
        server.stop()


def main():
    with tempfile.TemporaryDirectory() as work:
        started = time.time()
        zips = fixtures.all_fixtures(os.path.join(work, "zips"))
        print(f"fixtures written in {time.time() - started:.1f} s")
        os.makedirs(os.path.join(work, "builtin"))
        scenario("built-in store", os.path.join(work, "builtin"), {}, None, zips, full=True)
        shutil.rmtree(os.path.join(work, "builtin"))

        if RCLONE:
            root = os.path.join(work, "rclone-root")
            os.makedirs(os.path.join(root, "trainer"))
            port = free_port()
            rclone = subprocess.Popen([RCLONE, "serve", "s3", "--auth-key", f"{R2_KEY},{R2_SECRET}", "--addr", f"127.0.0.1:{port}",
                                       "--log-level", "ERROR", root], stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "rclone.log"), "w"))
            try:
                wait_for("rclone serve s3 listening", lambda: _connects(port), 10, interval=0.02)
                os.makedirs(os.path.join(work, "r2"))
                scenario("rclone serve s3 as the R2/S3 store", os.path.join(work, "r2"), {
                    "R2_BUCKET": "trainer", "R2_ENDPOINT": f"http://127.0.0.1:{port}",
                    "R2_ACCESS_KEY_ID": R2_KEY, "R2_SECRET_ACCESS_KEY": R2_SECRET,
                }, os.path.join(root, "trainer"), zips, full=False)
            except Exception:
                print("--- rclone serve s3 log\n" + open(os.path.join(work, "rclone.log")).read()[-3000:], file=sys.stderr)
                raise
            finally:
                rclone.terminate()
                rclone.wait(timeout=10)
        print(f"zip import end to end: all passed in {time.time() - started:.0f} s")


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
