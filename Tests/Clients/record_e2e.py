"""Reproducibility records and learned estimates end to end with the real binaries: `gomodel serve`
(built-in store and queue), one `gomodel worker --server` and the stand-in trainer, driven by the
API and the CLI.

Usage: python record_e2e.py path/to/gomodel
Checks: GET /api/estimate before any completed run (assumed: 600 s overhead plus the profile's
assumed seconds per step); a job trained to completion (asked seed, steps, rank, learning rate,
checkpoints, sampling, sample pairs; the rest defaulted; ending with sampling, as real runs do), its
record through the API and `gomodel jobs record` (stdout and -o, both equal to the API's): every
parameter as asked or defaulted, the config sent, the dataset digest recomputed from the files list
(sha256sum's form) and equal to the dataset's contentSha256, each file's SHA-256 and size equal to
the local file pushed, one completed attempt with its worker's environment (worker_version, gpu_name
"no GPU", trainer_commit from AI_TOOLKIT_COMMIT, python, packages), its checkpoints equal to the
job's checkpoint artifacts, its speed from the trainer's it/s; GET /api/estimate after it (learned
from that one run on "no GPU", seconds = overhead + steps x seconds per step; other profiles and
presets still assumed); `gomodel train --from-record` (the learned estimate line, the same preset,
every parameter, the seed too, the same dataset digest, a config differing only in the job's own id
and run name; an option beside it overriding that parameter only); a changed target image refused by
--from-record naming the file, then with a sample added and one deleted every file named (differs,
is gone, is new), and queued with --allow-changed-dataset (a warning naming them). Bad inputs:
another user's job record (404, and the CLI fails; their --from-record of it fails), an unknown or
malformed job id, no token (401), a file that is not a record (JSON, text, missing), neither
--dataset nor --from-record, --allow-changed-dataset alone, bad estimate queries (400); none of them
makes a job.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from support import check, gomodel_cli, own_environment, png, push_pairs, sign_in, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAND_IN = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")
TRAINER_COMMIT = "0123456789abcdef0123456789abcdef01234567"
STEPS = 20
# Each step and each sample image: the run ends sampling its 4 sample pairs for 1.6 s, as real runs
# end (ai-toolkit samples at the last step), long enough for that phase to reach the server.
STEP_SECONDS = 0.4
SAMPLE_PAIRS = ["cat", "dog", "fox", "owl"]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def differences(a, b, path=""):
    """The dotted paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        found = []
        for index, (x, y) in enumerate(zip(a, b)):
            found += differences(x, y, f"{path}[{index}]")
        return found
    return [] if a == b else [path]


def main():
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        env = own_environment(drop=("AI_TOOLKIT_COMMIT",))
        env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
        log = open(os.path.join(work, "serve.log"), "w")
        server = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(env, LOG_LEVEL="info"), stdout=log, stderr=subprocess.STDOUT)
        workers = []
        try:
            base = wait_serving(env["GOMODEL_DATA_DIR"])
            cli = gomodel_cli(GOMODEL, env)
            token = sign_in(cli, base, "record@example.com")
            push_pairs(cli, work)
            folder = os.path.join(work, "pairs")

            def add_pair(stem):
                open(os.path.join(folder, "control", stem + ".png"), "wb").write(png(640, 640))
                open(os.path.join(folder, "target", stem + ".png"), "wb").write(png(640, 640))
                open(os.path.join(folder, "target", stem + ".txt"), "w").write(f"make the {stem} a watercolour")

            for stem in ("fox", "owl", "yak"):
                add_pair(stem)
            cli("datasets", "push", folder, "--name", "pairs")
            key = cli("workers", "create-key", "--name", "record").strip()
            # Another user, logged in with a config folder of its own.
            other_env = dict(env, XDG_CONFIG_HOME=os.path.join(work, "config-other"))
            other_token = sign_in(gomodel_cli(GOMODEL, other_env), base, "other@example.com")

            def call(path, method="GET", body=None, bearer=token):
                """(status, JSON answer) of an API call; errors answer too."""
                headers = {"Content-Type": "application/json"}
                if bearer:
                    headers["Authorization"] = f"Bearer {bearer}"
                request = urllib.request.Request(base + path, method=method, headers=headers, data=None if body is None else json.dumps(body).encode())
                try:
                    response = urllib.request.urlopen(request, timeout=10)
                    return response.status, json.load(response)
                except urllib.error.HTTPError as error:
                    text = error.read()
                    try:
                        return error.code, json.loads(text)
                    except ValueError:
                        return error.code, text.decode(errors="replace")

            def api(path):
                status, answer = call(path)
                if status != 200:
                    raise AssertionError(f"GET {path} answered {status}: {answer}")
                return answer

            def wait(what, condition, timeout=60):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    value = condition()
                    if value:
                        return value
                    time.sleep(0.2)
                raise AssertionError("timed out waiting for " + what)

            def ended(job_id):
                return wait(f"job {job_id} to end", lambda: (lambda j: j if j["status"] in ("completed", "failed", "cancelled", "timed_out") else None)(api(f"/api/jobs/{job_id}")))

            def run(*args, environment=env):
                return subprocess.run([GOMODEL, *args], env=environment, capture_output=True, text=True, timeout=120)

            def queued_id(output):
                check("Queued job " in output, f"the job is queued ({output.strip()[:300]})")
                return output.split("Queued job ")[1].split(" ")[0]

            print("GET /api/estimate before any completed run: assumed")
            assumed = api("/api/estimate?steps=40")
            check(assumed["source"] == "assumed" and assumed["preset"] == "qwen-image-edit-2509" and assumed["profile"] == "32gb" and assumed["steps"] == 40,
                  f"the defaults' estimate is assumed ({assumed})")
            check(assumed["secondsPerStep"] == 6.0 and assumed["overheadSeconds"] == 600 and assumed["seconds"] == 600 + 40 * 6.0,
                  "600 s overhead plus 6 s a step on the 32gb profile")
            check("gpuName" not in assumed and "runs" not in assumed and "no completed run" in assumed["basis"], f"with no GPU nor runs, saying why ({assumed['basis']})")
            wide = api("/api/estimate?steps=1000&profile=80gb&preset=qwen-image-edit-2511")
            check(wide["preset"] == "qwen-image-edit-2511" and wide["profile"] == "80gb" and wide["seconds"] == 600 + 1000 * 2.5, f"preset and profile are honoured ({wide})")

            print("GET /api/estimate with bad queries: 400")
            for query in ("", "?steps=", "?steps=abc", "?steps=9", "?steps=30001", "?steps=-5", "?steps=100&profile=12gb", "?steps=100&preset=stable-diffusion"):
                status, answer = call("/api/estimate" + query)
                check(status == 400, f"/api/estimate{query} answers 400 ({status}: {str(answer)[:200]})")
            status, _ = call("/api/estimate?steps=100", bearer=None)
            check(status == 401, f"without a token: 401 ({status})")

            print("a job trained to completion with the stand-in")
            worker_env = dict(env, GOMODEL_TRAINER_COMMAND=f"python3 {STAND_IN}", GOMODEL_WORKDIR=os.path.join(work, "work-box"), STAND_IN_STEP_SECONDS=str(STEP_SECONDS),
                              AI_TOOLKIT_COMMIT=TRAINER_COMMIT)
            worker_env.pop("GOMODEL_DATA_DIR")
            worker_env.pop("HF_TOKEN", None)
            workers.append(subprocess.Popen([GOMODEL, "worker", "--server", base, "--key", key, "--name", "box"], env=worker_env,
                                            stdout=open(os.path.join(work, "box.log"), "w"), stderr=subprocess.STDOUT))
            dataset = next(d for d in api("/api/datasets")["datasets"] if d["name"] == "pairs")
            asked = {"steps": STEPS, "seed": 1234, "rank": 8, "learningRate": 0.0002, "keepCheckpoints": 3, "sampleEvery": STEPS, "samplePairs": SAMPLE_PAIRS}
            status, created = call("/api/jobs", "POST", {"datasetId": dataset["id"], "params": asked})
            check(status == 201, f"POST /api/jobs with a seed of its own ({status})")
            first_id = created["id"]
            first = ended(first_id)
            check(first["status"] == "completed", f"the job completed ({first['status']}: {first.get('error')})")

            print("its record through the API")
            record = api(f"/api/jobs/{first_id}/record")
            check(record["recordVersion"] == 1 and isinstance(record["serverVersion"], str) and record["serverVersion"], f"recordVersion 1, serverVersion {record['serverVersion']}")
            job = record["job"]
            check(job["id"] == first_id and job["status"] == "completed" and job["preset"] == "qwen-image-edit-2509" and job["createdAt"],
                  "the job's id, status, preset and creation time")
            check(isinstance(job.get("baseModel"), str) and "Qwen-Image-Edit" in job["baseModel"], f"its base model ({job.get('baseModel')})")
            check("promotedStep" not in job or job["promotedStep"] is None, "nothing promoted")
            parameters = job["parameters"]
            expected = dict(asked, profile="32gb", resolutions=[512, 768, 1024], saveEvery=10)
            check({k: parameters.get(k) for k in expected} == expected, f"every parameter as asked or defaulted, the seed too ({parameters})")
            check(parameters == {k: v for k, v in first["params"].items() if k in parameters} and set(parameters) <= set(first["params"]) | {"hfPublic", "triggerWord", "samplePairs", "hfRepo"},
                  "the same parameters the job shows")
            config = record["config"]
            process = config["config"]["process"][0]
            check(process["train"]["steps"] == STEPS and process["train"]["lr"] == 0.0002 and process["network"]["linear"] == 8 and process["sample"]["seed"] == 1234
                  and process["save"]["save_every"] == 10 and process["save"]["max_step_saves_to_keep"] == 3 and len(process["sample"]["samples"]) == 4,
                  "the config sent says the same steps, learning rate, rank, seed, saves and samples")
            check(config["meta"]["trainer_job_id"] == first_id.lower() and config["config"]["name"] == "gm_" + first_id.lower().replace("-", "")[:12],
                  f"the config names the job ({config['meta']['trainer_job_id']}, {config['config']['name']}; the API's id {first_id})")

            print("the dataset: its digest recomputed, every file as pushed")
            content = record["dataset"]
            check(content["id"] == dataset["id"] and content["name"] == "pairs", "the dataset's id and name")
            files = content["files"]
            text = "".join(f"{f['sha256']}  {f['path']}\n" for f in sorted(files, key=lambda f: f["path"]))
            check(sha256(text.encode()) == content["sha256"], "dataset.sha256 is the SHA-256 of sha256sum's lines for its files, sorted by path")
            local = {}
            for sub in ("control", "target"):
                for name in os.listdir(os.path.join(folder, sub)):
                    local[(sub, name)] = open(os.path.join(folder, sub, name), "rb").read()
            recorded = {}
            for f in files:
                top, name = f["path"].split("/", 1)
                recorded[("control" if top.startswith("control") else top, name)] = f
            check(set(recorded) == set(local), f"one recorded file for each pushed one ({sorted(f['path'] for f in files)})")
            check(all(recorded[k]["sha256"] == sha256(local[k]) and recorded[k]["bytes"] == len(local[k]) for k in local),
                  "each file's SHA-256 and size are the local file's")
            shown = api(f"/api/datasets/{dataset['id']}")
            check(shown.get("contentSha256") == content["sha256"], f"GET /api/datasets/{{id}} states the same contentSha256 ({shown.get('contentSha256')})")

            print("the attempt: its worker's environment, checkpoints and speed")
            check(len(record["attempts"]) == 1, f"one attempt ({len(record['attempts'])})")
            attempt = record["attempts"][0]
            check(attempt["attempt"] == 1 and attempt["status"] == "completed" and attempt.get("startedAt") and attempt.get("endedAt") and attempt["startedAt"] <= attempt["endedAt"],
                  f"attempt 1, completed, started before it ended ({attempt.get('startedAt')} .. {attempt.get('endedAt')})")
            check(attempt.get("runnerId"), f"run by a runner ({attempt.get('runnerId')})")
            environment = attempt.get("environment") or {}
            check(environment.get("worker_version") == record["serverVersion"], f"the worker's version ({environment.get('worker_version')})")
            check(environment.get("gpu_name") == "no GPU", f"gpu_name on a machine without nvidia-smi ({environment.get('gpu_name')})")
            check(environment.get("trainer_commit") == TRAINER_COMMIT, f"the trainer's commit from AI_TOOLKIT_COMMIT ({environment.get('trainer_commit')})")
            python = subprocess.run(["python3", "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True).stdout.strip()
            check(environment.get("python") == python, f"the trainer's python ({environment.get('python')}, here {python})")
            check(isinstance(environment.get("packages"), dict) and all(isinstance(v, str) for v in environment["packages"].values()),
                  f"its packages' versions ({environment.get('packages')})")
            steps = sorted({a["step"] for a in first["artifacts"] if a["kind"] == "checkpoint" and a.get("step") is not None})
            check(steps and attempt["checkpoints"] == steps, f"its checkpoints are the job's checkpoint artifacts' steps ({attempt['checkpoints']} vs {steps})")
            check(attempt.get("stepsTrained") == STEPS and not attempt.get("resumedFromStep"), f"it trained {STEPS} steps from the start ({attempt.get('stepsTrained')})")
            # The run ended sampling (no it/s in that phase's progress): the speed is the training's.
            check(isinstance(attempt.get("secondsPerStep"), (int, float)) and 0 < attempt["secondsPerStep"] < 5,
                  f"a speed from the trainer's it/s ({attempt.get('secondsPerStep')}; the job's last progress {first.get('progress')})")
            check(attempt.get("datasetSha256") == content["sha256"], "the dataset digest it trained")
            check(sorted(a["id"] for a in record["artifacts"]) == sorted(a["id"] for a in first["artifacts"]) and all(a.get("sha256") for a in record["artifacts"]),
                  f"the job's {len(record['artifacts'])} artifacts, each with its SHA-256")

            print("gomodel jobs record (stdout and -o)")
            printed = cli("jobs", "record", first_id)
            path = os.path.join(work, "record.json")
            said = cli("jobs", "record", first_id, "-o", path).strip()
            check(said == f"Saved the record of {first_id} to {path}.", said)
            saved = open(path).read()
            check(saved == printed and saved.startswith("{\n  "), "the file is the pretty JSON printed on stdout")
            from_cli = json.loads(saved)
            check(differences(from_cli, record) == [], f"and the API's record ({differences(from_cli, record)[:10]})")

            print("GET /api/estimate after it: learned")
            learned = api(f"/api/estimate?steps={STEPS}")
            check(learned["source"] == "learned" and learned.get("runs") == 1 and learned.get("gpuName") == "no GPU",
                  f"learned from 1 run on no GPU ({learned})")
            check(learned["secondsPerStep"] == attempt["secondsPerStep"], "its seconds per step are the attempt's")
            check(learned["overheadSeconds"] >= 0 and abs(learned["seconds"] - round(learned["overheadSeconds"] + STEPS * learned["secondsPerStep"])) <= 0.5,
                  f"seconds = overhead + steps x seconds per step ({learned['seconds']} = {learned['overheadSeconds']} + {STEPS} x {learned['secondsPerStep']})")
            check(learned["basis"] == "the median of the last 1 completed run on no GPU", learned["basis"])
            check(api(f"/api/estimate?steps={STEPS}&profile=48gb")["source"] == "assumed", "another profile is still assumed")
            check(api(f"/api/estimate?steps={STEPS}&preset=qwen-image-edit-2511")["source"] == "assumed", "another preset is still assumed")
            check(call(f"/api/estimate?steps={STEPS}", bearer=other_token)[1]["source"] == "learned", "the server's runs teach everyone's estimates")

            print("gomodel train --from-record: the same training again")
            again = cli("train", "--from-record", path, "--watch")
            second_id = queued_id(again)
            check("Estimated GPU time: " in again and "(the median of the last 1 completed run on no GPU)." in again, "it prints the learned estimate")
            check("Completed." in again, "and follows the job to completion")
            second = api(f"/api/jobs/{second_id}/record")
            check(second["job"]["preset"] == job["preset"] and second["job"]["parameters"] == parameters, f"the same preset and parameters, seed {second['job']['parameters'].get('seed')}")
            check(second["dataset"]["sha256"] == content["sha256"] and second["dataset"]["id"] == content["id"], "the same dataset content")
            changed = differences(config, second["config"])
            check(sorted(changed) == ["config.name", "meta.trainer_job_id"], f"a config differing only in the run's name and the job's id ({changed})")
            check(second["config"]["meta"]["trainer_job_id"] == second_id.lower() and second["config"]["config"]["name"] == "gm_" + second_id.lower().replace("-", "")[:12],
                  f"which are the new job's ({second['config']['meta']['trainer_job_id']}, {second['config']['config']['name']})")
            check(api(f"/api/estimate?steps={STEPS}")["runs"] == 2, "the estimate now learns from 2 runs")

            print("an option beside --from-record overrides that parameter only")
            overridden_id = queued_id(cli("train", "--from-record", path, "--steps", "30"))
            params = api(f"/api/jobs/{overridden_id}")["params"]
            check(params["steps"] == 30 and {k: params[k] for k in ("seed", "rank", "learningRate", "keepCheckpoints", "saveEvery")} == {k: parameters[k] for k in ("seed", "rank", "learningRate", "keepCheckpoints", "saveEvery")},
                  f"--steps 30 with the record's seed, rank, learning rate and saves ({params})")
            cli("jobs", "cancel", overridden_id)
            ended(overridden_id)

            print("a changed dataset: --from-record refuses, --allow-changed-dataset trains with a warning")
            open(os.path.join(folder, "target", "cat.png"), "wb").write(png(640, 640))
            cli("datasets", "push", folder, "--name", "pairs")
            now = api(f"/api/datasets/{dataset['id']}")
            check(now["contentSha256"] != content["sha256"], "the dataset's contentSha256 changed")
            refused = run("train", "--from-record", path)
            check(refused.returncode != 0 and "(target/cat.png differs)" in refused.stderr and "--allow-changed-dataset" in refused.stderr,
                  f"refused naming the changed file only, and the way out ({refused.stderr.strip()[:400]})")
            check(len(api("/api/jobs")["jobs"]) == 3, "and no job was made")
            # A new sample pushed, one deleted: every difference named.
            add_pair("bird")
            cli("datasets", "push", folder, "--name", "pairs")
            status, answer = call(f"/api/datasets/{dataset['id']}/samples/yak", "DELETE")
            check(status in (200, 204), f"the sample yak deleted ({status}: {str(answer)[:200]})")
            refused = run("train", "--from-record", path)
            listed = ("control_1/yak.png is gone; target/cat.png differs; target/yak.png is gone; target/yak.txt is gone; "
                      "control_1/bird.png is new; target/bird.png is new; target/bird.txt is new")
            check(refused.returncode != 0 and f"({listed})" in refused.stderr, f"refused naming what differs, is gone and is new ({refused.stderr.strip()[:500]})")
            allowed = run("train", "--from-record", path, "--allow-changed-dataset")
            check(allowed.returncode == 0 and "Warning:" in allowed.stderr and f"({listed})" in allowed.stderr,
                  f"--allow-changed-dataset trains, warning about the files ({allowed.stderr.strip()[:300]})")
            third_id = queued_id(allowed.stdout)
            cli("jobs", "cancel", third_id)
            check(ended(third_id)["status"] == "cancelled", "(cancelled)")

            print("bad inputs")
            status, answer = call(f"/api/jobs/{first_id}/record", bearer=other_token)
            check(status == 404, f"another user's job record: 404 ({status}: {str(answer)[:200]})")
            foreign = run("jobs", "record", first_id, environment=other_env)
            check(foreign.returncode != 0 and foreign.stdout == "" and "No job with this id" in foreign.stderr, f"and the CLI fails ({foreign.stderr.strip()[:200]})")
            status, answer = call(f"/api/jobs/{uuid.uuid4()}/record")
            check(status == 404, f"an unknown job id: 404 ({status})")
            status, answer = call("/api/jobs/not-a-job/record")
            check(status in (400, 404), f"a malformed job id: {status}")
            status, answer = call(f"/api/jobs/{first_id}/record", bearer=None)
            check(status == 401, f"no token: 401 ({status})")
            missing = run("jobs", "record", str(uuid.uuid4()), "-o", os.path.join(work, "missing.json"))
            check(missing.returncode != 0 and not os.path.exists(os.path.join(work, "missing.json")), f"the CLI fails on an unknown id and writes nothing ({missing.stderr.strip()[:200]})")
            not_record = os.path.join(work, "not-a-record.json")
            open(not_record, "w").write('{"hello": "world"}')
            bad = run("train", "--from-record", not_record)
            check(bad.returncode != 0 and "is not a job record" in bad.stderr, f"--from-record with a JSON file that is not a record ({bad.stderr.strip()[:300]})")
            bad = run("train", "--from-record", os.path.join(folder, "target", "cat.txt"))
            check(bad.returncode != 0 and "is not a job record" in bad.stderr, f"--from-record with a text file ({bad.stderr.strip()[:300]})")
            bad = run("train", "--from-record", os.path.join(work, "nowhere.json"))
            check(bad.returncode != 0 and "Cannot read" in bad.stderr, f"--from-record with no such file ({bad.stderr.strip()[:300]})")
            bad = run("train")
            check(bad.returncode != 0 and "Give --dataset NAME (or --from-record FILE)." in bad.stderr, f"neither --dataset nor --from-record ({bad.stderr.strip()[:300]})")
            bad = run("train", "--dataset", "pairs", "--allow-changed-dataset")
            check(bad.returncode != 0 and "--allow-changed-dataset goes with --from-record" in bad.stderr, f"--allow-changed-dataset alone ({bad.stderr.strip()[:300]})")
            stolen = run("train", "--from-record", path, environment=other_env)
            check(stolen.returncode != 0, f"another user's record names a dataset that user cannot train on ({stolen.stderr.strip()[:300]})")
            check(len(api("/api/jobs")["jobs"]) == 4, "none of them made a job")
        except Exception:
            log.flush()
            print("--- server log", file=sys.stderr)
            print(open(log.name).read()[-6000:], file=sys.stderr)
            box = os.path.join(work, "box.log")
            if os.path.exists(box):
                print("--- worker log", file=sys.stderr)
                print(open(box).read()[-3000:], file=sys.stderr)
            raise
        finally:
            for worker in workers:
                worker.kill()
            server.terminate()
            server.wait(timeout=20)
    print(f"records and estimates end to end: all passed in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
