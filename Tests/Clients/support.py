"""Helpers shared by the scripts in Tests/Clients (each adds its own folder to sys.path by being run)."""
import json
import os
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("  ok:", message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(width, height, filler=2048):
    """A PNG as far as a header reader can tell: signature, IHDR with the size, then filler."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + os.urandom(filler)


def own_environment(drop=()):
    """This process's environment without the settings of a server, store or RunPod endpoint it may
    run beside (and without the names in `drop`): what a test's own `gomodel` processes start from."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("R2_", "RUNPOD_", "GOMODEL_")) and k != "DATABASE_URL" and k not in drop}


def wait_for(what, condition, seconds=60, interval=0.05):
    """Polls `condition` until it returns something true, and returns that; fails after `seconds`
    saying `what` was awaited."""
    deadline = time.time() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out ({seconds} s) waiting for {what}")
        time.sleep(interval)  # polling


def wait_serving(data_dir, seconds=30):
    """Waits until a `gomodel serve --port 0` with this data folder listens (it then records its
    address there, with the port the system chose) and is ready; returns its base URL."""
    deadline, path = time.time() + seconds, os.path.join(data_dir, "serve-address")
    while not os.path.exists(path):
        if time.time() > deadline:
            raise AssertionError(f"gomodel serve did not start listening in {seconds} s")
        time.sleep(0.05)  # polling for the file
    base = open(path).read().strip()
    wait_ready(base, seconds)
    return base


def wait_ready(base, seconds=30):
    """Waits until a starting `gomodel serve` at `base` answers /readyz."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    raise AssertionError(f"gomodel serve at {base} did not become ready in {seconds} s")


def gomodel_cli(gomodel, env, timeout=300):
    """Runs `gomodel ARGS…` with `env`; returns its stdout, or fails with everything it printed."""
    def cli(*args):
        result = subprocess.run([gomodel, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"gomodel {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout
    return cli


def sign_in(cli, base, email):
    """A user made with the CLI (`cli` from gomodel_cli), logged in there; returns its API token."""
    cli("users", "create", "--email", email, "--password", "correct horse battery")
    token = cli("tokens", "create", "--email", email).strip()
    cli("login", "--server", base, "--token", token)
    return token


def push_pairs(cli, work):
    """Two placeholder pairs (PNG headers, captions) pushed with the CLI as the dataset `pairs`."""
    folder = os.path.join(work, "pairs")
    for sub in ("control", "target"):
        os.makedirs(os.path.join(folder, sub))
    for stem in ("cat", "dog"):
        open(os.path.join(folder, "control", stem + ".png"), "wb").write(png(640, 640))
        open(os.path.join(folder, "target", stem + ".png"), "wb").write(png(640, 640))
        open(os.path.join(folder, "target", stem + ".txt"), "w").write(f"make the {stem} a watercolour")
    cli("datasets", "push", folder, "--name", "pairs")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def download_artifact(base, token, job_id, artifact):
    """A job's file through its artifact route, which must answer 303 to a presigned URL."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(f"{base}/api/jobs/{job_id}/artifacts/{artifact['id']}", headers={"Authorization": f"Bearer {token}"})
    try:
        opener.open(request)
    except urllib.error.HTTPError as redirect:
        if redirect.code != 303:
            raise
        return urllib.request.urlopen(redirect.headers["Location"]).read()
    raise AssertionError("the artifact route did not redirect")


def api_call(base, token, method, path, body=None, timeout=60):
    """(status, parsed JSON body or None) of an API call, error answers too; a body that is not
    JSON comes back as {"raw": text}. Without a token, no Authorization header."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, (json.loads(raw) if raw else None)
    except ValueError:
        return status, {"raw": raw.decode(errors="replace")}
