"""Training end to end with the real binaries: `gomodel serve` (built-in store and queue), two
`gomodel worker --server` processes and the stand-in trainer, driven by the CLI.

Usage: python training_e2e.py path/to/gomodel
Checks: train --watch to completion with a worker given only --server and --key, and the LoRA
download (a safetensors header); a worker killed
with SIGKILL mid-run, another one finishing the job resumed from a checkpoint; a cancel mid-run
ending the job cancelled with its last checkpoint still downloadable; SIGTERM stopping a worker
and its trainer and handing the job back (preempted, queued again at once); `gomodel workers list|revoke` stopping a
revoked key's worker and requeueing its job; `gomodel worker --test-input` with a bad and a good input.
"""
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from support import check, download_artifact, gomodel_cli, own_environment, push_pairs, sign_in, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAND_IN = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")


def main():
    with tempfile.TemporaryDirectory() as work:
        env = own_environment()
        env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
        log = open(os.path.join(work, "serve.log"), "w")
        server = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(env, LOG_LEVEL="info"), stdout=log, stderr=subprocess.STDOUT)
        workers = []
        try:
            base = wait_serving(env["GOMODEL_DATA_DIR"])

            cli = gomodel_cli(GOMODEL, env)
            token = sign_in(cli, base, "e2e@example.com")
            push_pairs(cli, work)
            key = cli("workers", "create-key", "--name", "e2e").strip()
            store = json.loads(cli("storage", "credentials", "--json"))

            def worker_environment(name, step_seconds, store_settings=True):
                worker_env = dict(env, GOMODEL_TRAINER_COMMAND=f"python3 {STAND_IN}",
                                  GOMODEL_WORKDIR=os.path.join(work, "work-" + name), STAND_IN_STEP_SECONDS=str(step_seconds))
                if store_settings:
                    worker_env.update(R2_BUCKET=store["bucket"], R2_ENDPOINT=store["endpoint"], R2_ACCESS_KEY_ID=store["accessKeyId"],
                                      R2_SECRET_ACCESS_KEY=store["secretAccessKey"])
                worker_env.pop("GOMODEL_DATA_DIR")
                worker_env.pop("HF_TOKEN", None)
                return worker_env

            def start_worker(name, step_seconds, store_settings=True, worker_key=None):
                process = subprocess.Popen([GOMODEL, "worker", "--server", base, "--key", worker_key or key, "--name", name], env=worker_environment(name, step_seconds, store_settings),
                                           stdout=open(os.path.join(work, name + ".log"), "w"), stderr=subprocess.STDOUT)
                workers.append(process)
                return process

            def api(path):
                request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
                return json.load(urllib.request.urlopen(request, timeout=10))

            def wait(what, condition, timeout=120):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    value = condition()
                    if value:
                        return value
                    time.sleep(0.3)
                raise AssertionError("timed out waiting for " + what)

            def download(job_id, artifact):
                return download_artifact(base, token, job_id, artifact)

            print("train --watch with one worker, given nothing but --server and --key (each job brings its own store key)")
            first = start_worker("box-1", 0.02, store_settings=False)
            watched = cli("train", "--dataset", "pairs", "--steps", "60", "--watch")
            check("Completed." in watched and "step 60/60" in watched, "train --watch follows the job to completion")
            job = api("/api/jobs")["jobs"][0]
            lora = next(a for a in job["artifacts"] if a["kind"] == "lora")
            data = download(job["id"], lora)
            length = struct.unpack("<Q", data[:8])[0]
            header = json.loads(data[8:8 + length])
            check('"step": 60' in header["__metadata__"]["training_info"], "the downloaded LoRA is a safetensors file with its training step")

            print("promote a checkpoint; gomodel jobs download (the result, a step, all; resumed, checksum-checked)")
            run = lambda *args: subprocess.run([GOMODEL, *args], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
            checkpoint = next(a for a in job["artifacts"] if a["kind"] == "checkpoint" and a.get("step") == 30)
            name = checkpoint["key"].split("/")[-1]
            check("step 30 is now the result" in cli("jobs", "promote", job["id"], "--step", "30"), "jobs promote --step 30")
            check(api(f"/api/jobs/{job['id']}")["result"] == {"artifactId": checkpoint["id"], "kind": "checkpoint", "step": 30, "promoted": True},
                  "the job's result is step 30's checkpoint")
            folder = os.path.join(work, "downloads")
            got = cli("jobs", "download", job["id"], "-o", folder).strip()
            path = os.path.join(folder, name)
            check(got == path and hashlib.sha256(open(path, "rb").read()).hexdigest() == checkpoint["sha256"],
                  "jobs download gives the promoted checkpoint by default, its SHA-256 as recorded")
            check("already there, checked" in cli("jobs", "download", job["id"], "-o", folder), "a second download checks the file and sends nothing")
            # An interrupted download: the first half in NAME.part; the next run continues it.
            resumed = os.path.join(work, "resumed")
            os.makedirs(resumed)
            whole = open(path, "rb").read()
            open(os.path.join(resumed, name + ".part"), "wb").write(whole[: len(whole) // 2])
            cli("jobs", "download", job["id"], "--step", "30", "-o", resumed)
            check(open(os.path.join(resumed, name), "rb").read() == whole and not os.path.exists(os.path.join(resumed, name + ".part")),
                  "an interrupted download continues from its part and ends whole")
            # A part that is not the file's beginning: the checksum catches it, and the part goes.
            broken = os.path.join(work, "broken")
            os.makedirs(broken)
            open(os.path.join(broken, name + ".part"), "wb").write(b"\0" * (len(whole) // 2))
            bad = run("jobs", "download", job["id"], "--step", "30", "-o", broken)
            check(bad.returncode != 0 and "damaged" in bad.stderr and not os.listdir(broken), f"a damaged download is refused and removed ({bad.stderr.strip()[-200:]})")
            missing = run("jobs", "download", job["id"], "--step", "31", "-o", broken)
            check(missing.returncode != 0 and "no checkpoint at step 31" in missing.stderr, "an unknown step is refused, naming the steps there are")
            everything = cli("jobs", "download", job["id"], "--all", "-o", os.path.join(work, "all")).split()
            kinds = {a["kind"] for a in job["artifacts"] if a["kind"] != "optimizer"}
            check(len(everything) == len([a for a in job["artifacts"] if a["kind"] != "optimizer"]) and "sample" in kinds and "lora" in kinds,
                  f"--all downloads every file but the optimizer states ({len(everything)} files)")
            foreign = run("jobs", "promote", str(uuid.uuid4()), "--step", "30")
            check(foreign.returncode != 0 and "No job with this id" in foreign.stderr, "an unknown job id is refused")
            check("final LoRA is the result" in cli("jobs", "promote", job["id"], "--final"), "jobs promote --final")

            print("a Hugging Face push needs the worker's HF_TOKEN, and says so before training")
            bad_repo = run("train", "--dataset", "pairs", "--hf-repo", "not a repo")
            check(bad_repo.returncode != 0 and "hfRepo" in bad_repo.stderr, "a malformed repo id is refused naming the field")
            pushing = cli("train", "--dataset", "pairs", "--steps", "20", "--hf-repo", "me/watercolour-lora").split("Queued job ")[1].split(" ")[0]
            ended = wait("the push job to end", lambda: (lambda j: j if j["status"] in ("completed", "failed") else None)(api(f"/api/jobs/{pushing}")))
            check(ended["status"] == "failed" and "HF_TOKEN" in ended["error"] and "me/watercolour-lora" in ended["error"] and not ended["artifacts"],
                  f"without HF_TOKEN the job fails at once, naming the repo and the variable ({ended['error']})")

            print("a worker killed mid-run")
            first.kill()
            first.wait()
            # Its job-take long poll may still be open on the server; a job it hands out there
            # cannot be written to the closed connection and goes straight back to the queue.
            slow = start_worker("box-2", 0.1)
            job_id = cli("train", "--dataset", "pairs", "--steps", "200", "--sample-pairs", "cat").split("Queued job ")[1].split(" ")[0]
            wait("a checkpoint", lambda: any(a["kind"] == "checkpoint" and (a.get("step") or 0) >= 50 for a in api(f"/api/jobs/{job_id}")["artifacts"]))
            slow.send_signal(signal.SIGKILL)
            slow.wait()
            last = start_worker("box-3", 0.01)
            done = wait("the job to finish on another worker", lambda: (lambda j: j if j["status"] in ("completed", "failed") else None)(api(f"/api/jobs/{job_id}")), timeout=180)
            check(done["status"] == "completed" and done["attempt"] == 2, f"another worker finished it as attempt 2 (got {done['status']}, attempt {done['attempt']})")
            trainer_log = next(a for a in done["artifacts"] if a["kind"] == "log")
            check(b"Found step" in download(job_id, trainer_log), "it resumed from a checkpoint, not from step 0")

            print("cancel mid-run")
            job_id = cli("train", "--dataset", "pairs", "--steps", "2000").split("Queued job ")[1].split(" ")[0]
            wait("a checkpoint", lambda: any(a["kind"] == "checkpoint" for a in api(f"/api/jobs/{job_id}")["artifacts"]))
            cli("jobs", "cancel", job_id)
            ended = wait("the cancel", lambda: (lambda j: j if j["status"] == "cancelled" else None)(api(f"/api/jobs/{job_id}")), timeout=60)
            checkpoint = next(a for a in ended["artifacts"] if a["kind"] == "checkpoint" and a["key"].endswith(".safetensors"))
            check(download(job_id, checkpoint)[:8] != b"", "the job ended cancelled and its last checkpoint stays downloadable")

            print("SIGTERM: the worker stops its trainer, uploads its newest checkpoint and hands the job back")
            job_id = cli("train", "--dataset", "pairs", "--steps", "2000").split("Queued job ")[1].split(" ")[0]
            wait("a checkpoint", lambda: any(a["kind"] == "checkpoint" for a in api(f"/api/jobs/{job_id}")["artifacts"]))
            last.send_signal(signal.SIGTERM)
            check(last.wait(timeout=60) == 0, "the worker exits 0 on SIGTERM")
            worker_log = open(os.path.join(work, "box-3.log")).read()
            check("job preempted; reported for a resume elsewhere" in worker_log and worker_log.rstrip().endswith("stopped"), "and says so")
            trainers = [p for p in os.listdir("/proc") if p.isdigit() and "work-box-3" in open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")]
            check(not trainers, f"its trainer is gone (left: {trainers})")
            handed_back = api(f"/api/jobs/{job_id}")
            check(handed_back["status"] == "queued" and handed_back["events"][-1]["message"].startswith("Its worker was shut down (preempted); back in the queue as attempt 2, resuming from step "),
                  f"the job is queued again at once, to resume from its checkpoint ({handed_back['status']}: {handed_back['events'][-1]['message']})")

            print("gomodel workers: a revoked key's worker stops its trainer, and its job goes back to the queue")
            spare = cli("workers", "create-key", "--name", "spare").strip()
            refused = subprocess.run([GOMODEL, "workers", "create-key", "--name", "spare"], env=env, capture_output=True, text=True, timeout=60)
            check(refused.returncode != 0 and "A worker key named 'spare' exists" in refused.stderr, f"a second key named spare is refused ({refused.stderr.strip()})")
            doomed = start_worker("box-r", 0.05, worker_key=spare)
            wait("the handed-back job taken by box-r", lambda: api(f"/api/jobs/{job_id}")["status"] == "running")
            listed = [line.split() for line in cli("workers", "list").splitlines()]
            check(listed[0][:2] == ["NAME", "ID"] and any(row[0] == "spare" and row[-2:] == ["1", "active"] for row in listed[1:]),
                  f"workers list shows spare running one job: {listed}")
            said = cli("workers", "revoke", "spare").strip()
            check(said == "Revoked the worker key 'spare'. The job its workers were running goes back to the queue.", said)
            check(doomed.wait(timeout=60) == 77, "the revoked key's worker exits 77")
            doomed_log = open(os.path.join(work, "box-r.log")).read()
            check("was revoked" in doomed_log and "job stopped" in doomed_log, "saying its key was revoked")
            trainers = [p for p in os.listdir("/proc") if p.isdigit() and "work-box-r" in open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")]
            check(not trainers, f"its trainer is gone (left: {trainers})")
            requeued = wait("the job back in the queue", lambda: (lambda j: j if j["status"] == "queued" else None)(api(f"/api/jobs/{job_id}")), timeout=30)
            check("key was revoked; back in the queue as attempt 3" in requeued["events"][-1]["message"], requeued["events"][-1]["message"])
            listed = [line.split() for line in cli("workers", "list").splitlines()]
            check(any(row[0] == "spare" and row[4:6] == ["0", "revoked"] for row in listed[1:]), f"and the list shows it revoked: {listed}")
            again = subprocess.run([GOMODEL, "workers", "revoke", "spare"], env=env, capture_output=True, text=True, timeout=60)
            check(again.returncode != 0 and "No worker key has the id or name 'spare'" in again.stderr, f"revoking it again says so ({again.stderr.strip()})")
            cli("jobs", "cancel", job_id)

            print("gomodel worker --test-input")
            tester = worker_environment("box-t", 0.01)
            bad = os.path.join(work, "bad.json")
            open(bad, "w").write('{"input": {"check": true}}')
            result = subprocess.run([GOMODEL, "worker", "--test-input", bad], env=tester, capture_output=True, text=True, timeout=60)
            check(result.returncode == 1 and "The job failed: The job's input is not valid: input.contract_version is missing" in result.stderr,
                  f"a bad input fails saying which field ({result.returncode}: {result.stderr.strip()[:300]})")
            # A real input: the first job's config as its worker wrote it, the work root put back to /workspace.
            config = next(a for a in job["artifacts"] if a["kind"] == "config")
            job_config = json.loads(download(job["id"], config).decode().replace(os.path.join(work, "work-box-1"), "/workspace"))
            dataset = job["datasetId"].lower()
            good = os.path.join(work, "job.json")
            json.dump({"input": {"contract_version": 1, "trainer_job_id": "test-input", "job_config": job_config,
                                 "r2_dataset": {"datasetId": dataset, "bucket": store["bucket"], "prefix": f"datasets/{dataset}/"},
                                 "output": {"bucket": store["bucket"], "prefix": "outputs/test-input/"}}}, open(good, "w"))
            result = subprocess.run([GOMODEL, "worker", "--test-input", good], env=tester, capture_output=True, text=True, timeout=120)
            check(result.returncode == 0, f"a good input runs ({result.stderr.strip()[-500:]})")
            output = json.loads("\n".join(line for line in result.stdout.splitlines() if not line.startswith("progress: ")))
            check(output["steps"] == 60 and any(a["kind"] == "lora" and a["key"].startswith("outputs/test-input/") for a in output["artifacts"]),
                  "and prints the result with its LoRA in the output prefix")
            check("progress: " in result.stdout and '"phase": ' in result.stdout, "progress is printed as it goes")
        except Exception:
            log.flush()
            print("--- server log", file=sys.stderr)
            print(open(log.name).read()[-6000:], file=sys.stderr)
            try:
                for shown in api("/api/jobs")["jobs"]:
                    events = api(f"/api/jobs/{shown['id']}").get("events", [])
                    print(f"--- job {shown['id']} {shown['status']} attempt {shown.get('attempt')}", file=sys.stderr)
                    for event in events:
                        print(f"    {event.get('at')} {event.get('status')}: {event.get('message')}", file=sys.stderr)
            except Exception as error:
                print(f"(jobs unavailable: {error})", file=sys.stderr)
            for name in os.listdir(work):
                if name.startswith("box-") and name.endswith(".log"):
                    print(f"--- {name}", file=sys.stderr)
                    print(open(os.path.join(work, name)).read()[-1500:], file=sys.stderr)
            raise
        finally:
            for worker in workers:
                worker.kill()
            server.terminate()
            server.wait(timeout=20)
    print("training end to end: all passed")


if __name__ == "__main__":
    main()
