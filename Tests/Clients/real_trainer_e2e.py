"""Training end to end with the REAL ai-toolkit on CPU: `gomodel serve` (built-in store and queue),
`gomodel worker --server` and ostris/ai-toolkit at the pinned commit, training a tiny random-weight
Qwen-Image-Edit-2509 (Tests/Fixtures/tiny_qwen_image_edit.py) with the job config our builder
wrote, changed only by Tests/Fixtures/real-trainer-overrides.json (through real-trainer.py).

Usage (scripts/test runs it when AI_TOOLKIT_DIR is set):
    AI_TOOLKIT_DIR=… .venv-aitk/bin/python Tests/Clients/real_trainer_e2e.py path/to/gomodel
Run with the trainer's venv python (scripts/ai-toolkit-env): it needs Pillow, and diffusers for
the LoRA check.

Checks: the job completes; steps and loss are seen live, and the sampling phase; loss.csv has one
point per step, equal to ai-toolkit's own loss_log.db; samples are decodable JPEGs served through
the job's artifact route; every checkpoint and the optimizer state saved with it are uploaded at
every save (distinct states); a SIGKILLed worker's job is resumed by another worker from the last
uploaded checkpoint with that step's optimizer state, and ends at the right step; the job's
reproducibility record names both attempts, the trainer's commit, the Python and the package
versions ai-toolkit ran with, the resume step, the seed and the dataset's file digests; the final
LoRA loads in diffusers' QwenImageEditPlusPipeline and changes its output.
"""
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

from PIL import Image

from support import check, download_artifact, gomodel_cli, own_environment, sign_in, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
AI_TOOLKIT_DIR = os.environ["AI_TOOLKIT_DIR"]
# The commit every part pins, named once in the requirements file; the extracted archive has no
# .git, so the worker is told it as the worker image's .git/HEAD would.
PINNED_COMMIT = re.search(r"^# ai-toolkit commit: *(\w+)", open(os.path.join(ROOT, "deploy", "worker", "ai-toolkit-requirements.txt")).read(), re.M).group(1)
# The tiny model is built once and kept (it is the same for the same builder version).
MODEL_DIR = os.environ.get("TINY_MODEL_DIR") or os.path.join(ROOT, ".build-aitk", "tiny-qwen-image-edit-2509")
# Long enough that the first worker is killed mid-run after two uploaded saves (0.25 s a step).
STEPS, SAVE_EVERY, SAMPLE_EVERY = 200, 10, 100


def loss_log(output_folder):
    """ai-toolkit's own per-step losses (its UI logger's SQLite file)."""
    path = os.path.join(output_folder, "loss_log.db")
    if not os.path.exists(path):
        return {}
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT step, value_real FROM metrics WHERE key = 'loss/loss'").fetchall())


def kill_session(leader):
    """SIGKILL to every process of the worker's session: the worker, and the trainer and its
    DataLoader workers in their own process group (as when a GPU box dies)."""
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[3]) == leader:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def done_run_name(job):
    """config.name of a job (the output folder's name), from its LoRA's key."""
    return next(a for a in job["artifacts"] if a["kind"] == "lora")["key"].split("/")[-1][:-len(".safetensors")]


def main():
    started = time.time()
    subprocess.run([sys.executable, os.path.join(FIXTURES, "tiny_qwen_image_edit.py"), MODEL_DIR], check=True)
    print(f"  (tiny model ready in {time.time() - started:.1f} s)")
    with tempfile.TemporaryDirectory() as work:
        env = own_environment()
        env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"), HF_HUB_OFFLINE="1")
        log = open(os.path.join(work, "serve.log"), "w")
        server = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(env, LOG_LEVEL="info"), stdout=log, stderr=subprocess.STDOUT)
        workers = []
        try:
            base = wait_serving(env["GOMODEL_DATA_DIR"])

            cli = gomodel_cli(GOMODEL, env)

            token = sign_in(cli, base, "real@example.com")

            # Real pictures: a coloured square moved and recoloured by the "edit". The samples have
            # 1, 2 and 3 control images (a mixed dataset; ai-toolkit finds each sample's own).
            folder = os.path.join(work, "pairs")
            for sub in ("control", "control_2", "control_3", "target"):
                os.makedirs(os.path.join(folder, sub))
            for index, stem in enumerate(("cat", "dog", "owl")):
                # Small: images under the config's sizes train at their own size (fast on CPU).
                for number, sub in enumerate(("control", "control_2", "control_3")[:index + 1]):
                    control = Image.new("RGB", (96, 96), (40 * index, 90, 160 - 50 * number))
                    control.paste((250, 220, 30), (10 + 8 * index, 20, 50 + 8 * index, 60))
                    control.save(os.path.join(folder, sub, stem + ".png"))
                target = Image.new("RGB", (96, 96), (40 * index, 90, 160))
                target.paste((200, 30, 30), (40, 30 + 8 * index, 80, 70 + 8 * index))
                target.save(os.path.join(folder, "target", stem + ".png"))
                open(os.path.join(folder, "target", stem + ".txt"), "w").write(f"paint the {stem}'s square red and move it")
            pushed = cli("datasets", "push", folder, "--name", "tiny")
            check("1 sample with 1 control image, 1 with 2 control images, 1 with 3 control images" in pushed, "the push reports the mix of control counts")
            key = cli("workers", "create-key", "--name", "cpu").strip()
            store = json.loads(cli("storage", "credentials", "--json"))

            def start_worker(name):
                worker_env = dict(env, R2_BUCKET=store["bucket"], R2_ENDPOINT=store["endpoint"], R2_ACCESS_KEY_ID=store["accessKeyId"],
                                  R2_SECRET_ACCESS_KEY=store["secretAccessKey"], AI_TOOLKIT_DIR=AI_TOOLKIT_DIR, TINY_MODEL_DIR=MODEL_DIR,
                                  GOMODEL_TRAINER_COMMAND=f"{sys.executable} {os.path.join(FIXTURES, 'real-trainer.py')}",
                                  GOMODEL_WORKDIR=os.path.join(work, "work-" + name), AI_TOOLKIT_COMMIT=PINNED_COMMIT,
                                  # One CPU thread: torch's spinning OpenMP threads slow a tiny model down
                                  # a hundredfold when another process wants the cores (a build, a test).
                                  OMP_NUM_THREADS="1")
                worker_env.pop("GOMODEL_DATA_DIR")
                # Its own session: kill_session takes the trainer with it.
                process = subprocess.Popen([GOMODEL, "worker", "--server", base, "--key", key, "--name", name], env=worker_env,
                                           stdout=open(os.path.join(work, name + ".log"), "w"), stderr=subprocess.STDOUT, start_new_session=True)
                workers.append(process)
                return process

            def api(path, body=None):
                request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                                 data=json.dumps(body).encode() if body is not None else None)
                return json.load(urllib.request.urlopen(request, timeout=10))

            def download(job_id, artifact):
                return download_artifact(base, token, job_id, artifact)

            seen = []  # every distinct progress the API showed, in order

            def watch(job_id, until, what, timeout):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    job = api(f"/api/jobs/{job_id}")
                    progress = job.get("progress") or {}
                    if progress and (not seen or seen[-1] != progress):
                        seen.append(progress)
                    if until(job):
                        return job
                    if job["status"] in ("failed", "cancelled", "timed_out"):
                        raise AssertionError(f"the job ended {job['status']}: {job.get('error')}\n{(job.get('errorDetail') or '')[-3000:]}")
                    time.sleep(0.25)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")

            def saved(job):
                """Steps with both a checkpoint and its optimizer state uploaded."""
                kinds = {}
                for artifact in job["artifacts"]:
                    if artifact["kind"] in ("checkpoint", "optimizer"):
                        kinds.setdefault(artifact.get("step"), set()).add(artifact["kind"])
                return sorted(step for step, got in kinds.items() if got == {"checkpoint", "optimizer"})

            print("a real ai-toolkit run, killed after its second save, resumed by another worker")
            first = start_worker("cpu-1")
            # The 2511 preset: its config differs from 2509's only in the model's name (overridden with
            # the tiny model), its adapter (quantisation is off here) and its arch tag, which this
            # run shows ai-toolkit reads. Every sample is sampled, each with its own controls.
            job_id = api("/api/jobs", {"datasetId": api("/api/datasets")["datasets"][0]["id"], "preset": "qwen-image-edit-2511",
                                       "params": {"steps": STEPS, "saveEvery": SAVE_EVERY, "sampleEvery": SAMPLE_EVERY, "resolutions": [256],
                                                  "samplePairs": ["cat", "dog", "owl"]}})["id"]
            watch(job_id, lambda job: len(saved(job)) >= 2, "two saves uploaded by the first worker", timeout=600)
            kill_session(first.pid)
            first.wait()
            killed_at = api(f"/api/jobs/{job_id}")
            # What the API shows lags the worker by its progress throttle: more saves may be in the bucket.
            shown_saves = saved(killed_at)
            print(f"  (killed with saves {shown_saves} shown, at step {(killed_at.get('progress') or {}).get('step')}, {time.time() - started:.0f} s in)")
            optimizer_states = {a["step"]: a for a in killed_at["artifacts"] if a["kind"] == "optimizer"}
            first_two = [hashlib.sha256(download(job_id, optimizer_states[step])).hexdigest() for step in sorted(optimizer_states)[:2]]
            check(first_two[0] != first_two[1], "each save's optimizer state is uploaded as it was then (optimizer.pt is rewritten in place with the same size)")

            start_worker("cpu-2")
            done = watch(job_id, lambda job: job["status"] == "completed", "the job to complete on the second worker (after the first one's lease)", timeout=600)
            print(f"  (completed {time.time() - started:.0f} s in)")
            check(done["attempt"] == 2, f"the second worker ran it as attempt 2 (got {done['attempt']})")
            trainer_log = download(job_id, next(a for a in done["artifacts"] if a["kind"] == "log")).decode(errors="replace")
            found = re.search(r"Found step (\d+) in metadata", trainer_log)
            resume_step = int(found.group(1)) if found else 0
            local_saves = sorted(int(name[-21:-12]) for name in os.listdir(os.path.join(work, "work-cpu-1", "output", done_run_name(done)))
                                 if re.fullmatch(r".*_\d{9}\.safetensors", name))
            check(resume_step >= max(shown_saves) and resume_step in local_saves,
                  f"ai-toolkit resumed from a checkpoint the first worker saved and uploaded (step {resume_step}; shown {shown_saves}, saved {local_saves})")
            check("Loading optimizer state from" in trainer_log, "with an optimizer state")
            state_key = f"{done_run_name(done)}_{resume_step:09d}.optimizer.pt"
            check(f"gomodel worker: Resuming from step {resume_step} with its optimizer state" in trainer_log and state_key in trainer_log,
                  f"the state saved with that same checkpoint ({state_key}, the worker's first log line)")
            check(done["progress"]["step"] == STEPS, f"and ended at step {STEPS} (progress shows {done['progress'].get('step')})")

            print("the reproducibility record names what trained it")
            record = api(f"/api/jobs/{job_id}/record")
            attempts = record["attempts"]
            check([a["status"] for a in attempts] == ["interrupted", "completed"], f"attempt 1 (its worker killed) and attempt 2 ({[a['status'] for a in attempts]})")
            machine = attempts[1].get("environment") or {}
            check(machine.get("trainer_commit") == PINNED_COMMIT, f"the trainer's commit, the pinned one ({machine.get('trainer_commit')})")
            packages = machine.get("packages") or {}
            for name in ("torch", "diffusers", "transformers", "safetensors"):
                check(packages.get(name) == importlib.metadata.version(name), f"{name} {packages.get(name)}, as installed where ai-toolkit ran")
            check(machine.get("python") == platform.python_version() and machine.get("gpu_name"), f"Python {machine.get('python')} on {machine.get('gpu_name')}")
            check(attempts[1]["resumedFromStep"] == resume_step and attempts[1]["stepsTrained"] == STEPS - resume_step,
                  f"attempt 2 resumed from step {resume_step} and trained the rest ({attempts[1]['resumedFromStep']}, {attempts[1]['stepsTrained']})")
            check(record["job"]["parameters"]["seed"] == 42 and record["job"]["preset"] == "qwen-image-edit-2511", "the seed and the preset")
            check(len(record["dataset"]["files"]) == 12 and all(len(f["sha256"]) == 64 for f in record["dataset"]["files"]),
                  "the dataset's 12 files, each with its SHA-256")

            steps_seen = {p["step"] for p in seen if p.get("phase") == "training" and p.get("step")}
            check(len(steps_seen) >= 5, f"steps were seen live ({sorted(steps_seen)})")
            check(any(p.get("loss") is not None for p in seen if p.get("phase") == "training"), "and the loss with them")
            check(any(p.get("phase") == "sampling" for p in seen), "the sampling phase was shown (" + ", ".join(sorted({p.get('phase', '?') for p in seen})) + ")")

            csv = download(job_id, next(a for a in done["artifacts"] if a["kind"] == "loss")).decode()
            points = [line.split(",") for line in csv.splitlines()[1:] if line]
            steps = [int(step) for step, _ in points]
            check(len(steps) == len(set(steps)), "loss.csv has one point per step")
            outputs = [os.path.join(work, name, "output", entry) for name in ("work-cpu-1", "work-cpu-2")
                       for entry in os.listdir(os.path.join(work, name, "output"))]
            # The first attempt's values up to the resume step, then the second's (it trains them again).
            logged = {step: value for step, value in loss_log(outputs[0]).items() if step < resume_step}
            logged.update(loss_log(outputs[1]))
            ours = {int(step): float(loss) for step, loss in points}
            compared = [step for step in logged if step in ours]
            missing = sorted(set(logged) - set(ours))
            check(not missing, f"loss.csv covers the steps loss_log.db has ({len(compared)} of {len(logged)}; missing {missing})")
            wrong = [(step, ours[step], logged[step]) for step in compared if abs(ours[step] - logged[step]) > 1e-3 * abs(logged[step]) + 1e-12]
            check(not wrong, f"each point equals ai-toolkit's loss_log.db value for that step (first differences: {wrong[:3]})")

            samples = [a for a in done["artifacts"] if a["kind"] == "sample"]
            check(len(samples) >= 3, f"samples were uploaded, one per picked sample and its controls ({len(samples)})")
            for sample in samples[:3]:
                image = Image.open(io.BytesIO(download(job_id, sample)))
                image.load()
                check(image.format == "JPEG" and image.size[0] > 0, f"sample {sample['key'].split('/')[-1]} is a decodable JPEG served by the job's artifact route ({image.size})")

            checkpoints = sorted(a["step"] for a in done["artifacts"] if a["kind"] == "checkpoint")
            optimizers = sorted(a["step"] for a in done["artifacts"] if a["kind"] == "optimizer")
            expected = list(range(SAVE_EVERY, STEPS, SAVE_EVERY))
            check(checkpoints == expected and optimizers == expected, f"every save's checkpoint and optimizer state is in the bucket ({checkpoints}, {optimizers})")

            lora = next(a for a in done["artifacts"] if a["kind"] == "lora")
            lora_file = os.path.join(work, "final.safetensors")
            open(lora_file, "wb").write(download(job_id, lora))
            control = os.path.join(folder, "control", "cat.png")
            result = subprocess.run([sys.executable, os.path.join(ROOT, "Tests", "Clients", "lora_check.py"), MODEL_DIR, lora_file, control],
                                    capture_output=True, text=True, timeout=300, env=dict(env, HF_HUB_OFFLINE="1"))
            check(result.returncode == 0, f"the final LoRA loads in QwenImageEditPlusPipeline and changes its output ({(result.stdout + result.stderr).strip()[-400:]})")
        except Exception:
            log.flush()
            print("--- server log", file=sys.stderr)
            print(open(log.name).read()[-4000:], file=sys.stderr)
            for name in sorted(os.listdir(work)):
                if name.startswith("cpu-") and name.endswith(".log"):
                    print(f"--- {name}", file=sys.stderr)
                    print(open(os.path.join(work, name)).read()[-1500:], file=sys.stderr)
            for logfile in subprocess.run(["find", work, "-name", "log.txt"], capture_output=True, text=True).stdout.split():
                print(f"--- {logfile}", file=sys.stderr)
                print(open(logfile, errors="replace").read()[-4000:], file=sys.stderr)
            print("--- progress seen: " + json.dumps(seen[-20:]), file=sys.stderr)
            raise
        finally:
            for worker in workers:
                kill_session(worker.pid)
            server.terminate()
            server.wait(timeout=20)
    print(f"real trainer end to end: all passed ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
