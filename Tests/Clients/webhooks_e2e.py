"""Outgoing webhooks end to end with the real binaries: `gomodel serve` (with
GOMODEL_WEBHOOKS_ALLOW_PRIVATE=1, so that it may post to this machine), a `gomodel worker` with the
stand-in trainer, the CLI, and a receiver here (http.server in a thread) that checks every request's
signature twice: with the Standard Webhooks reference library (standardwebhooks, pinned in
scripts/tools) and by hand (HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`).

Usage: python webhooks_e2e.py path/to/gomodel   (in .venv-tools: it needs standardwebhooks)
Checks:
- registering through the API and `gomodel webhooks add` (the secret shown once, never listed);
  bad URLs (not http(s), no URL, credentials, a port outside 1-65535), an unknown event, no events,
  an unknown field are 400s through the API, and the CLI refuses them with the server's message; an
  upper-case scheme is stored lower-case;
- another user's webhook is 404 for GET, DELETE, test and deliveries (as is an unknown id), and
  stays as it was; `gomodel webhooks remove` of it fails;
- a test event through the API and through `gomodel webhooks test`: delivered, verified, the body
  the receiver got being the delivery's recorded payload; a receiver answering 500 or a redirect
  makes `gomodel webhooks test` exit 1 (and the redirect is not followed);
- a real training job whose endpoint answers 500 to its first delivery: the receiver gets
  job.started, checkpoint.saved for every checkpoint (key and SHA-256 as the job lists them) and
  job.completed, the ids in them exactly as the API writes them, every request verified; the 500'd delivery comes again about 5 s later with the
  same webhook-id and body, and its log (API and `gomodel webhooks deliveries`) shows tries 500, 200
  and state delivered; every event is delivered exactly once; an endpoint for job.completed only
  gets that alone; a tampered body or a wrong secret fails both verifications;
- an endpoint with nothing listening: its delivery stays pending, each try with an error and no
  status code ("Could not connect…"), the next try in the future; a receiver slower than the
  server's 10 s timeout: a try recorded as unanswered, still pending, while a test event to another
  endpoint arrives meanwhile (sends do not wait for each other);
- a deleted webhook (`gomodel webhooks remove`) is 404 and gets none of the job's events;
- a second server, without GOMODEL_WEBHOOKS_ALLOW_PRIVATE, refuses loopback, private and
  link-local targets (127.0.0.1, localhost, [::1], 10.x, 169.254.169.254) with 422 private_address,
  through the API and the CLI, and takes a public address.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from support import api_call, check, free_port, gomodel_cli, own_environment, push_pairs, sign_in, wait_for, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAND_IN = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")
EVENTS = ["job.started", "job.completed", "job.failed", "job.cancelled", "checkpoint.saved"]
SLOW_SECONDS = 12  # longer than the server's 10 s


# --- the receiver ---------------------------------------------------------------------------------

def verified_by_library(secret, body, headers):
    try:
        Webhook(secret).verify(body, headers)
        return True
    except WebhookVerificationError:
        return False


def verified_by_hand(secret, body, headers):
    """Standard Webhooks' check in a few lines: any `v1,` signature matching, a timestamp within 5 min."""
    if not secret or not secret.startswith("whsec_") or abs(time.time() - int(headers.get("webhook-timestamp", "0"))) > 300:
        return False
    signed = f"{headers.get('webhook-id')}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(base64.b64decode(secret[6:]), signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, given) for given in headers.get("webhook-signature", "").split(" "))


class Receiver:
    """Records every POST (path, headers, body, both verifications, the status it got) and answers
    by a per-path script: a list of what to answer next (a status, or "slow"), then 200."""

    def __init__(self):
        self.lock = threading.Lock()
        self.secrets, self.script, self.requests = {}, {}, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                secret = receiver.secrets.get(self.path)
                with receiver.lock:
                    planned = receiver.script.get(self.path)
                    answer = planned.pop(0) if planned else 200
                    record = dict(path=self.path, headers=headers, body=body, json=json.loads(body), at=time.time(), answer=answer,
                                  library=verified_by_library(secret, body, headers), by_hand=verified_by_hand(secret, body, headers))
                    receiver.requests.append(record)
                if answer == "slow":
                    time.sleep(SLOW_SECONDS)
                    answer = 200
                try:
                    self.send_response(answer)
                    if answer == 302:
                        self.send_header("Location", "/landing")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the slow answer, after the server gave up on it

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


# --- helpers --------------------------------------------------------------------------------------

def call(base, token, method, path, body=None):
    """(status, parsed JSON or None) of an API call."""
    return api_call(base, token, method, path, body, timeout=20)


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def statuses(delivery):
    return [a.get("statusCode") for a in delivery["attempts"]]


def main():
    with tempfile.TemporaryDirectory() as work:
        clean = own_environment()
        env = dict(clean, GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
        # The second server: loopback targets refused (the default), its own data and login.
        env2 = dict(clean, GOMODEL_DATA_DIR=os.path.join(work, "data2"), XDG_CONFIG_HOME=os.path.join(work, "config2"))
        log = open(os.path.join(work, "serve.log"), "w")
        server = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(env, GOMODEL_WEBHOOKS_ALLOW_PRIVATE="1", LOG_LEVEL="info"),
                                  stdout=log, stderr=subprocess.STDOUT)
        strict = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=env2, stdout=open(os.path.join(work, "serve2.log"), "w"), stderr=subprocess.STDOUT)
        processes = [server, strict]
        receiver = Receiver()
        R = receiver.base
        try:
            base = wait_serving(env["GOMODEL_DATA_DIR"])
            base2 = wait_serving(env2["GOMODEL_DATA_DIR"])
            cli = gomodel_cli(GOMODEL, env)
            run = lambda *args, environment=env: subprocess.run([GOMODEL, *args], env=environment, capture_output=True, text=True, timeout=60)  # noqa: E731
            token = sign_in(cli, base, "hooks@example.com")
            push_pairs(cli, work)
            key = cli("workers", "create-key", "--name", "hooks").strip()
            worker_env = dict(env, GOMODEL_TRAINER_COMMAND=f"python3 {STAND_IN}", GOMODEL_WORKDIR=os.path.join(work, "work"), STAND_IN_STEP_SECONDS="0.05")
            worker_env.pop("GOMODEL_DATA_DIR")
            worker_env.pop("HF_TOKEN", None)
            processes.append(subprocess.Popen([GOMODEL, "worker", "--server", base, "--key", key, "--name", "box"], env=worker_env,
                                              stdout=open(os.path.join(work, "worker.log"), "w"), stderr=subprocess.STDOUT))
            api = lambda method, path, body=None: call(base, token, method, path, body)  # noqa: E731

            def add_cli(url, *options):
                said = cli("webhooks", "add", url, *options).strip().splitlines()
                return said[0].split()[1], said[-1]

            def deliveries(hook):
                status, body = api("GET", f"/api/webhooks/{hook}/deliveries")
                if status != 200:
                    raise AssertionError(f"GET /api/webhooks/{hook}/deliveries answered {status}: {body}")
                return body["deliveries"]

            print("registering, through the API and the CLI")
            status, everything = api("POST", "/api/webhooks", {"url": R + "/all", "description": "  everything  "})
            check(status == 201 and everything["events"] == EVENTS and everything["url"] == R + "/all" and everything["description"] == "everything",
                  f"POST /api/webhooks registers all events by default ({status}: {everything})")
            check(everything["secret"].startswith("whsec_") and len(base64.b64decode(everything["secret"][6:])) == 32,
                  "with a whsec_ secret of 32 random bytes, shown in the answer")
            receiver.secrets["/all"] = everything["secret"]
            ended, ended_secret = add_cli(R + "/completed", "--events", "job.completed", "--description", "only the end")
            receiver.secrets["/completed"] = ended_secret
            check(ended_secret.startswith("whsec_"), "gomodel webhooks add prints the id and, alone on the last line, the secret")
            status, shown = api("GET", f"/api/webhooks/{ended}")
            check(status == 200 and shown["events"] == ["job.completed"] and shown["description"] == "only the end" and "secret" not in shown,
                  f"GET /api/webhooks/ID shows it, without the secret ({shown})")
            status, listed = api("GET", "/api/webhooks")
            check(status == 200 and [h["id"].lower() for h in listed["webhooks"]] == [everything["id"].lower(), ended]
                  and not any("secret" in h for h in listed["webhooks"]), "GET /api/webhooks lists both, oldest first, without secrets")
            lines = cli("webhooks", "list").splitlines()
            check(len(lines) == 2 and lines[0].startswith(everything["id"].lower()) and f"{ended}  {R}/completed  job.completed  (only the end)" == lines[1],
                  f"gomodel webhooks list shows them ({lines})")

            print("bad inputs")
            for url in ("ftp://x", "not a url", "http://user:pw@example.com/", "https:///nohost", "https://example.com/#fragment", "",
                        "http://1.1.1.1:99999/", "http://1.1.1.1:0/", "http://localhost:70000/",
                        "http://1.1.1.1:99999999999999999999/", "http://127.0.0.1:18446744073709591693/"):
                status, body = api("POST", "/api/webhooks", {"url": url})
                check(status == 400 and body["error"]["code"] == "invalid_url", f"{url!r} is a 400 invalid_url ({body['error']['message']})")
            status, body = api("POST", "/api/webhooks", {"url": R + "/x", "events": ["job.started", "job.exploded"]})
            check(status == 400 and body["error"]["code"] == "invalid_parameter" and "job.exploded" in body["error"]["message"],
                  f"an unknown event is a 400 invalid_parameter naming it ({body['error']['message']})")
            status, body = api("POST", "/api/webhooks", {"url": R + "/x", "events": []})
            check(status == 400 and body["error"]["code"] == "invalid_parameter", f"no events is a 400 ({body['error']['message']})")
            status, body = api("POST", "/api/webhooks", {"url": R + "/x", "secret": "whsec_bWluZQ=="})
            check(status == 400 and "secret" in body["error"]["message"], f"an unknown field is a 400 ({body['error']})")
            status, body = api("POST", "/api/webhooks", {"events": ["job.started"]})
            check(status == 400, f"no url is a 400 ({body['error']})")
            status, body = api("POST", "/api/webhooks", {"url": R + "/x", "description": "d" * 201})
            check(status == 400 and body["error"]["code"] == "invalid_parameter", f"a description over 200 characters is a 400 ({body['error']})")
            bad = run("webhooks", "add", "ftp://x")
            check(bad.returncode != 0 and "http:// or https://" in bad.stderr, f"gomodel webhooks add ftp://x fails with the reason ({bad.stderr.strip()})")
            bad = run("webhooks", "add", R + "/x", "--events", "job.completed,job.exploded")
            check(bad.returncode != 0 and "'job.exploded' is not an event" in bad.stderr, f"and an unknown event ({bad.stderr.strip()})")
            bad = run("webhooks", "test", "not-an-id")
            check(bad.returncode != 0 and "is not a webhook id" in bad.stderr, f"gomodel webhooks test refuses a malformed id ({bad.stderr.strip()})")
            status, listed = api("GET", "/api/webhooks")
            check(len(listed["webhooks"]) == 2, "none of them registered anything")
            shouting = f"HTTP://127.0.0.1:{free_port()}/x"
            status, body = api("POST", "/api/webhooks", {"url": shouting})
            check(status == 201 and body["url"] == "http" + shouting[4:], f"an upper-case scheme is stored lower-case ({status}: {body.get('url')})")
            check(api("GET", f"/api/webhooks/{body['id']}")[1]["url"].startswith("http://") and api("DELETE", f"/api/webhooks/{body['id']}")[0] == 204,
                  "so it is listed (then deleted)")

            print("another user's webhook is as unknown as a missing one")
            cli("users", "create", "--email", "other@example.com", "--password", "correct horse battery")
            other = cli("tokens", "create", "--email", "other@example.com").strip()
            env_other = dict(env, XDG_CONFIG_HOME=os.path.join(work, "config-other"))
            gomodel_cli(GOMODEL, env_other)("login", "--server", base, "--token", other)
            for hook in (everything["id"], str(uuid.uuid4()), "not-a-uuid"):
                for method, path in (("GET", ""), ("POST", "/test"), ("GET", "/deliveries"), ("DELETE", "")):
                    status, body = call(base, other, method, f"/api/webhooks/{hook}{path}")
                    check(status == 404 and body["error"]["code"] == "not_found", f"{method} /api/webhooks/{hook[:10]}…{path} as another user: 404 ({body})")
            check(call(base, other, "GET", "/api/webhooks") == (200, {"webhooks": []}), "the other user lists none")
            bad = run("webhooks", "remove", everything["id"], environment=env_other)
            check(bad.returncode != 0 and "No webhook with this id" in bad.stderr, f"gomodel webhooks remove of it fails ({bad.stderr.strip()})")
            bad = run("webhooks", "deliveries", everything["id"], environment=env_other)
            check(bad.returncode != 0 and "No webhook with this id" in bad.stderr, "and so does gomodel webhooks deliveries")
            check(api("GET", f"/api/webhooks/{everything['id']}")[0] == 200 and not receiver.at("/all"), "the webhook is still there, and nothing was sent")

            print("test events, through the API and the CLI")
            status, queued = api("POST", f"/api/webhooks/{everything['id']}/test")
            check(status == 202 and queued["eventType"] == "webhook.test" and queued["messageId"].startswith("msg_") and queued["state"] == "pending",
                  f"POST /api/webhooks/ID/test queues a webhook.test delivery ({status}: {queued['state']})")
            got = wait_for("the test event", lambda: receiver.at("/all"))[0]
            check(got["library"] and got["by_hand"], "it arrives, its signature verified by standardwebhooks and by hand")
            check(got["headers"]["webhook-id"] == queued["messageId"] and got["headers"]["content-type"] == "application/json"
                  and abs(int(got["headers"]["webhook-timestamp"]) - time.time()) < 60, "with the delivery's webhook-id, a current webhook-timestamp, JSON")
            check(got["json"]["type"] == "webhook.test" and got["json"]["data"]["webhookId"] == everything["id"]
                  and abs(parse_time(got["json"]["timestamp"]) - time.time()) < 60, f"the body is {{type, timestamp, data}} ({got['json']})")
            done = wait_for("the delivery recorded", lambda: [d for d in deliveries(everything["id"]) if d["id"] == queued["id"] and d["state"] == "delivered"])[0]
            check(statuses(done) == [200] and done["deliveredAt"] and "nextAttemptAt" not in done and done["payload"].encode() == got["body"],
                  "its log shows one try answered 200, and the payload is the body the receiver got, byte for byte")
            # A tampered body, a wrong secret, a stale timestamp: caught by both checks.
            tampered = got["body"].replace(b"webhook.test", b"webhook.tesT")
            check(not verified_by_library(everything["secret"], tampered, got["headers"]) and not verified_by_hand(everything["secret"], tampered, got["headers"]),
                  "a tampered body fails both verifications")
            wrong = "whsec_" + base64.b64encode(os.urandom(32)).decode()
            check(not verified_by_library(wrong, got["body"], got["headers"]) and not verified_by_hand(wrong, got["body"], got["headers"]),
                  "so does another secret")
            stale = dict(got["headers"], **{"webhook-timestamp": str(int(got["headers"]["webhook-timestamp"]) - 3600)})
            check(not verified_by_library(everything["secret"], got["body"], stale) and not verified_by_hand(everything["secret"], got["body"], stale),
                  "and an hour-old timestamp")
            said = cli("webhooks", "test", ended).strip()
            check(said.startswith("Delivered: the receiver answered 200 in "), f"gomodel webhooks test waits for the answer ({said})")
            got = receiver.at("/completed")
            check(len(got) == 1 and got[0]["json"]["type"] == "webhook.test" and got[0]["library"] and got[0]["by_hand"],
                  "a test event goes to a webhook whatever its events, verified")

            print("a receiver answering 500 or a redirect: gomodel webhooks test exits 1")
            flaky, flaky_secret = add_cli(R + "/flaky", "--events", "job.failed")
            receiver.secrets["/flaky"] = flaky_secret
            receiver.script["/flaky"] = [500]
            bad = run("webhooks", "test", flaky)
            check(bad.returncode == 1 and "The receiver answered 500; it is tried again later." in bad.stdout, f"500: exit 1 ({bad.stdout.strip()})")
            moving, moving_secret = add_cli(R + "/moving", "--events", "job.failed")
            receiver.secrets["/moving"] = moving_secret
            receiver.script["/moving"] = [302]
            bad = run("webhooks", "test", moving)
            check(bad.returncode == 1 and "The receiver answered 302" in bad.stdout and not receiver.at("/landing"),
                  f"a redirect is not followed: exit 1, nothing at its Location ({bad.stdout.strip()})")
            (flaky_test,) = deliveries(flaky)
            check(flaky_test["state"] == "pending" and statuses(flaky_test) == [500] and parse_time(flaky_test["nextAttemptAt"]) > time.time(),
                  "the 500'd test event waits for its retry")
            cli("webhooks", "remove", moving)

            print("a deleted webhook")
            doomed, doomed_secret = add_cli(R + "/doomed")
            receiver.secrets["/doomed"] = doomed_secret
            check(cli("webhooks", "test", doomed).startswith("Delivered"), "a webhook that works")
            check(cli("webhooks", "remove", doomed).strip() == f"Deleted webhook {doomed}.", "gomodel webhooks remove deletes it")
            check(api("GET", f"/api/webhooks/{doomed}")[0] == 404 and api("GET", f"/api/webhooks/{doomed}/deliveries")[0] == 404
                  and api("DELETE", f"/api/webhooks/{doomed}")[0] == 404, "then it is 404 (GET, deliveries, DELETE)")
            check(doomed not in cli("webhooks", "list"), "and not listed")

            print("an endpoint with nothing listening")
            status, gone = api("POST", "/api/webhooks", {"url": f"http://127.0.0.1:{free_port()}/gone", "events": ["job.started"]})
            check(status == 201, "registered (the server allows loopback targets here)")
            bad = run("webhooks", "test", gone["id"])
            check(bad.returncode == 1 and bad.stdout.startswith("Not delivered: ") and "tried again later" in bad.stdout,
                  f"gomodel webhooks test says it was not delivered ({bad.stdout.strip()})")

            print("a training job; the endpoint answers 500 to its first delivery")
            receiver.script["/all"] = [500]
            job_id = cli("train", "--dataset", "pairs", "--steps", "30").split("Queued job ")[1].split(" ")[0]
            job = wait_for("the job to end", lambda: (lambda j: j if j["status"] in ("completed", "failed", "cancelled") else None)(api("GET", f"/api/jobs/{job_id}")[1]), 120)
            check(job["status"] == "completed", f"the job completed ({job['status']}: {job.get('error')})")
            checkpoints = {a["step"]: a for a in job["artifacts"] if a["kind"] == "checkpoint" and a["key"].endswith(".safetensors")}
            check(len(checkpoints) >= 2, f"it saved {len(checkpoints)} checkpoints, at steps {sorted(checkpoints)}")
            expected = sorted(["job.started", "job.completed"] + ["checkpoint.saved"] * len(checkpoints))

            def of_job(path):
                return [r for r in receiver.at(path) if r["json"]["type"] != "webhook.test"]

            wait_for("every event delivered to /all", lambda: sorted(r["json"]["type"] for r in of_job("/all") if r["answer"] == 200) == expected, 30)
            got = of_job("/all")
            check(all(r["library"] and r["by_hand"] for r in got), f"all {len(got)} requests verified by standardwebhooks and by hand")
            first, ok = got[0], [r for r in got if r["answer"] == 200]
            check(first["answer"] == 500 and first["json"]["type"] == "job.started" and [r["answer"] for r in got].count(500) == 1,
                  "the first, job.started, was answered 500")
            again = [r for r in got if r["headers"]["webhook-id"] == first["headers"]["webhook-id"]]
            check(len(again) == 2 and again[1]["answer"] == 200 and again[1]["body"] == first["body"] and 4.5 <= again[1]["at"] - first["at"] < 15,
                  f"and came again {again[1]['at'] - first['at']:.1f} s later with the same webhook-id and body, answered 200")
            check(len({r["headers"]["webhook-id"] for r in ok}) == len(ok) == len(expected),
                  f"every event delivered exactly once: {', '.join(r['json']['type'] for r in ok)}")
            for r in ok:
                data = r["json"]["data"]
                check(data["job"]["id"] == job["id"] and data["job"]["preset"] == job["preset"] and data["job"]["datasetId"] == job["datasetId"]
                      and data["job"]["attempt"] == 1, f"{r['json']['type']} names the job, its preset, dataset and attempt, the ids as the API writes them")
            started = next(r for r in ok if r["json"]["type"] == "job.started")["json"]["data"]["job"]
            completed = next(r for r in ok if r["json"]["type"] == "job.completed")["json"]["data"]["job"]
            check(started["status"] == "running" and completed["status"] == "completed" and "error" not in completed,
                  f"job.started says running, job.completed completed ({started['status']}, {completed['status']})")
            saved = {r["json"]["data"]["checkpoint"]["step"]: r["json"]["data"]["checkpoint"] for r in ok if r["json"]["type"] == "checkpoint.saved"}
            check(sorted(saved) == sorted(checkpoints)
                  and all(saved[s]["key"] == checkpoints[s]["key"] and saved[s].get("sha256") == checkpoints[s].get("sha256") for s in saved),
                  f"checkpoint.saved for each checkpoint, with its key and SHA-256 (steps {sorted(saved)})")

            logged = {d["messageId"]: d for d in deliveries(everything["id"]) if d["eventType"] != "webhook.test"}
            retried = logged[first["headers"]["webhook-id"]]
            check(retried["eventType"] == "job.started" and retried["jobId"] == job["id"] and statuses(retried) == [500, 200] and retried["state"] == "delivered"
                  and 4.5 <= parse_time(retried["attempts"][1]["at"]) - parse_time(retried["attempts"][0]["at"]) < 15,
                  f"its delivery log shows tries 500, 200 about 5 s apart, delivered ({[(a['at'], a.get('statusCode')) for a in retried['attempts']]})")
            check(len(logged) == len(expected) and all(statuses(d) == [200] and d["state"] == "delivered" for m, d in logged.items() if m != retried["messageId"]),
                  "every other delivery of the job: one try, 200")
            lines = cli("webhooks", "deliveries", everything["id"]).splitlines()
            line = next(line for line in lines if retried["messageId"] in line)
            check("  job.started  delivered  " in line and line.endswith("tries: 500, 200"), f"gomodel webhooks deliveries shows it ({line})")

            got = of_job("/completed")
            check(len(got) == 1 and got[0]["json"]["type"] == "job.completed" and got[0]["json"]["data"]["job"]["id"] == job["id"]
                  and got[0]["library"] and got[0]["by_hand"], f"the job.completed-only endpoint got job.completed alone ({[r['json']['type'] for r in got]})")
            check([r["json"]["type"] for r in receiver.at("/doomed")] == ["webhook.test"], "the deleted webhook got none of the job's events")
            check(not of_job("/flaky"), "nor did the job.failed-only one")

            pending = wait_for("the unreachable endpoint's job.started delivery tried",
                           lambda: [d for d in deliveries(gone["id"]) if d["eventType"] == "job.started" and d["attempts"]])[0]
            check(pending["state"] == "pending" and all("statusCode" not in a and a.get("error", "").startswith("Could not connect") for a in pending["attempts"])
                  and parse_time(pending["nextAttemptAt"]) > time.time() and pending["jobId"] == job["id"],
                  f"nothing listening: the delivery stays pending, its tries errors without a status, the next in the future ({pending['attempts'][0]['error']})")
            line = next(line for line in cli("webhooks", "deliveries", gone["id"]).splitlines() if "job.started" in line)
            check("  pending  " in line and "tries: error" in line and "next try " in line, f"gomodel webhooks deliveries shows it ({line})")

            print("a receiver slower than the server's timeout")
            status, slow = api("POST", "/api/webhooks", {"url": R + "/slow", "events": ["job.failed"]})
            receiver.secrets["/slow"] = slow["secret"]
            receiver.script["/slow"] = ["slow"]
            api("POST", f"/api/webhooks/{slow['id']}/test")
            wait_for("the slow request", lambda: receiver.at("/slow"))
            status, quick = api("POST", f"/api/webhooks/{everything['id']}/test")
            asked = time.time()
            wait_for("a test event to another endpoint meanwhile", lambda: [r for r in receiver.at("/all") if r["headers"]["webhook-id"] == quick["messageId"]])
            meanwhile = time.time() - asked
            tried = wait_for("the slow delivery's try", lambda: [d for d in deliveries(slow["id"]) if d["attempts"]], 20)[0]
            check(tried["state"] == "pending" and "statusCode" not in tried["attempts"][0] and "No answer within 10 s" in tried["attempts"][0].get("error", "")
                  and tried["attempts"][0]["milliseconds"] >= 9500 and parse_time(tried["nextAttemptAt"]) > time.time(),
                  f"a try unanswered in 10 s is recorded as such ({tried['attempts'][0]}), still pending")
            check(meanwhile < 3, f"meanwhile a test event to another endpoint arrived in {meanwhile:.1f} s: the slow receiver holds up only its own deliveries")
            cli("webhooks", "remove", slow["id"])

            print("a server without GOMODEL_WEBHOOKS_ALLOW_PRIVATE refuses private targets")
            cli2 = gomodel_cli(GOMODEL, env2)
            token2 = sign_in(cli2, base2, "strict@example.com")
            port = free_port()
            for url in (f"http://127.0.0.1:{port}/x", f"http://localhost:{port}/x", f"http://[::1]:{port}/x", "http://10.1.2.3/hook",
                        "http://169.254.169.254/latest/meta-data", R + "/all"):
                status, body = call(base2, token2, "POST", "/api/webhooks", {"url": url})
                check(status == 422 and body["error"]["code"] == "private_address", f"{url}: 422 private_address ({body['error']['message']})")
            bad = run("webhooks", "add", f"http://localhost:{port}/x", environment=env2)
            check(bad.returncode != 0 and "GOMODEL_WEBHOOKS_ALLOW_PRIVATE" in bad.stderr, f"gomodel webhooks add says why ({bad.stderr.strip()})")
            status, public = call(base2, token2, "POST", "/api/webhooks", {"url": "https://1.1.1.1/hooks/gomodel"})
            check(status == 201, f"a public address is taken ({status})")
            check(call(base2, token2, "DELETE", f"/api/webhooks/{public['id']}")[0] == 204, "and deleted (204)")
        except Exception:
            log.flush()
            print("--- server log", file=sys.stderr)
            print(open(log.name).read()[-6000:], file=sys.stderr)
            print("--- receiver: " + "; ".join(f"{r['path']} {r['json'].get('type')} {r['headers'].get('webhook-id')} -> {r['answer']}" for r in receiver.requests),
                  file=sys.stderr)
            raise
        finally:
            receiver.server.shutdown()
            for process in processes[2:]:
                process.kill()
            for process in processes[:2]:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    print("outgoing webhooks end to end: all passed")


if __name__ == "__main__":
    main()
