"""Instructions drafted from the pairs, end to end with the real binaries, both ways:

1. through an OpenAI-compatible endpoint (Tests/Fixtures/fake_openai.py, which checks OpenAI's
   chat format and that every image is a real data: URL): `gomodel serve` with GOMODEL_CAPTION_URL;
   a throttled answer retried, drafts stored as drafts, training refused until they are reviewed,
   accept / edit / reject, and a refused API key failing the run with a message that says so;
2. on a GPU worker: `gomodel serve` without an endpoint queues a drafting job, `gomodel worker
   --server` runs the real captioner (Sources/TrainerWorker/Captioner/caption.py) on a tiny
   random-weight Qwen2.5-VL (Tests/Fixtures/tiny_qwen25vl.py), and the drafts arrive.

Usage (scripts/test runs it with the trainer's venv, which has torch and transformers):
    .venv-aitk/bin/python Tests/Clients/drafts_e2e.py path/to/gomodel
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from PIL import Image

from support import check, gomodel_cli, own_environment, sign_in, wait_serving

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Fixtures"))
from fake_openai import FakeOpenAI  # noqa: E402

GOMODEL = os.path.abspath(sys.argv[1])
MODEL_DIR = os.environ.get("TINY_QWEN25VL_DIR") or os.path.join(ROOT, ".build-aitk", "tiny-qwen25vl")
CAPTIONER = os.path.join(ROOT, "Sources", "TrainerWorker", "Captioner", "caption.py")
STAND_IN = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")


def write_pairs(folder):
    """cat (captioned, 1 control), dog (1 control) and owl (2 controls) without instructions."""
    for sub in ("control", "control_2", "target"):
        os.makedirs(os.path.join(folder, sub))
    for index, stem in enumerate(("cat", "dog", "owl")):
        for number, sub in enumerate(("control", "control_2")[:1 + (stem == "owl")]):
            Image.new("RGB", (96, 96), (40 * index, 90 + 40 * number, 160)).save(os.path.join(folder, sub, stem + ".png"))
        Image.new("RGB", (96, 96), (200, 40 * index, 30)).save(os.path.join(folder, "target", stem + ".png"))
    open(os.path.join(folder, "target", "cat.txt"), "w").write("make the cat red")


class Server:
    def __init__(self, work, name, extra):
        self.env = own_environment()
        self.env.update(GOMODEL_DATA_DIR=os.path.join(work, name, "data"), XDG_CONFIG_HOME=os.path.join(work, name, "config"), HF_HUB_OFFLINE="1")
        self.log = open(os.path.join(work, name + "-serve.log"), "w")
        self.process = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(self.env, **extra), stdout=self.log, stderr=subprocess.STDOUT)
        self.base = wait_serving(self.env["GOMODEL_DATA_DIR"])
        self.cli = gomodel_cli(GOMODEL, self.env)
        self.token = sign_in(self.cli, self.base, "drafts@example.com")
        folder = os.path.join(work, name, "pairs")
        write_pairs(folder)
        self.cli("datasets", "push", folder, "--name", "pairs")
        self.dataset = self.api("GET", "/api/datasets")["datasets"][0]["id"]

    def api(self, method, path, body=None, expect=None):
        request = urllib.request.Request(self.base + path, method=method, headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
                                         data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        if expect is not None:
            check(status == expect, f"{method} {path} answers {expect} (got {status}: {text[:300]!r})")
        return json.loads(text) if text else None

    def drafts_when_ended(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            listed = self.api("GET", f"/api/datasets/{self.dataset}/drafts")
            if listed["run"] and listed["run"]["state"] != "running":
                return listed
            time.sleep(0.2)
        raise AssertionError(f"the drafting run did not end in {timeout} s: {listed}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)


def through_an_endpoint(work):
    print("drafts through an OpenAI-compatible endpoint")
    with FakeOpenAI(key="sk-e2e") as fake:
        fake.fail_next(1, status=429, retry_after=0)
        server = Server(work, "endpoint", {"GOMODEL_CAPTION_URL": fake.base_url, "GOMODEL_CAPTION_API_KEY": "sk-e2e", "GOMODEL_CAPTION_MODEL": "gpt-4o-mini"})
        try:
            run = server.api("POST", f"/api/datasets/{server.dataset}/drafts", expect=202)
            check(run["mode"] == "endpoint" and run["samplesTotal"] == 2, f"only the samples without an instruction are drafted ({run})")
            listed = server.drafts_when_ended(60)
            check(listed["run"]["state"] == "done" and listed["run"]["drafted"] == 2, f"both drafted ({listed['run']})")
            drafts = {d["stem"]: d for d in listed["drafts"]}
            check(sorted(drafts) == ["dog", "owl"] and all(d["source"] == "endpoint:gpt-4o-mini" for d in drafts.values()), f"stored as drafts ({drafts})")
            chats = [r for r in fake.requests if r["path"].startswith("/v1/chat/completions")]
            check(chats[0]["status"] == 429 and all(r["status"] == 200 for r in chats[1:]) and len(chats) == 3, f"the throttled answer was retried ({[r['status'] for r in chats]})")
            check(all(r["headers"].get("authorization") == "Bearer sk-e2e" for r in chats) and all(r["body"]["model"] == "gpt-4o-mini" for r in chats[1:]), "with the key and model")
            check(sorted(len(r["images"]) for r in chats[1:]) == [2, 3], "each sample's controls then its target, as real images")
            check(drafts["owl"]["text"].startswith("Make it look like a watercolour"), f"the reply read as the instruction ({drafts['owl']['text']})")

            dataset = server.api("GET", f"/api/datasets/{server.dataset}")
            codes = sorted(f["code"] for f in dataset["validation"]["findings"] if f["severity"] == "error")
            check(not dataset["validation"]["sound"] and codes == ["unaccepted_draft", "unaccepted_draft"], f"drafts keep the dataset from training ({codes})")
            refused = server.api("POST", "/api/jobs", {"datasetId": server.dataset}, expect=422)
            check("waiting for review" in json.dumps(refused), "a job refuses to start while a draft is unaccepted")

            server.api("POST", f"/api/datasets/{server.dataset}/drafts/dog/accept", {"caption": "Make the dog's square yellow."}, expect=200)
            server.api("POST", f"/api/datasets/{server.dataset}/drafts/owl/accept", expect=200)
            captions = {f["stem"]: f["caption"] for f in server.api("GET", f"/api/datasets/{server.dataset}")["files"] if f["role"] == "caption"}
            check(captions["dog"] == "Make the dog's square yellow." and captions["owl"] == drafts["owl"]["text"], f"accepted as edited and as drafted ({captions})")
            server.api("POST", "/api/jobs", {"datasetId": server.dataset}, expect=201)
        finally:
            server.stop()

    print("a refused API key fails the run and says why")
    with FakeOpenAI(key="sk-right") as fake:
        server = Server(work, "wrong-key", {"GOMODEL_CAPTION_URL": fake.base_url, "GOMODEL_CAPTION_API_KEY": "sk-wrong", "GOMODEL_CAPTION_MODEL": "gpt-4o-mini"})
        try:
            server.api("POST", f"/api/datasets/{server.dataset}/drafts", expect=202)
            listed = server.drafts_when_ended(60)
            check(listed["run"]["state"] == "failed" and "GOMODEL_CAPTION_API_KEY" in listed["run"]["error"] and not listed["drafts"], f"failed: {listed['run']}")
        finally:
            server.stop()


def on_a_gpu_worker(work):
    print("drafts on a worker: the real captioner with a tiny Qwen2.5-VL")
    subprocess.run([sys.executable, os.path.join(ROOT, "Tests", "Fixtures", "tiny_qwen25vl.py"), MODEL_DIR], check=True, stdout=subprocess.DEVNULL)
    server = Server(work, "worker", {"GOMODEL_CAPTION_MODEL": MODEL_DIR})
    worker = None
    try:
        key = server.cli("workers", "create-key", "--name", "gpu").strip()
        run = server.api("POST", f"/api/datasets/{server.dataset}/drafts", expect=202)
        check(run["mode"] == "worker" and run["jobId"], f"a drafting job is queued ({run})")
        worker_env = dict(server.env, GOMODEL_WORKDIR=os.path.join(work, "worker-root"), GOMODEL_TRAINER_COMMAND=f"{sys.executable} {STAND_IN}",
                          GOMODEL_CAPTION_COMMAND=f"{sys.executable} {CAPTIONER}", OMP_NUM_THREADS="1")
        worker_env.pop("GOMODEL_DATA_DIR")
        worker = subprocess.Popen([GOMODEL, "worker", "--server", server.base, "--key", key, "--name", "gpu-1"], env=worker_env,
                                  stdout=open(os.path.join(work, "worker.log"), "w"), stderr=subprocess.STDOUT)
        listed = server.drafts_when_ended(300)
        job = server.api("GET", f"/api/jobs/{run['jobId']}")
        check(listed["run"]["state"] == "done" and job["status"] == "completed", f"the job completed ({job['status']}: {job.get('error')}; {listed['run']})")
        drafts = {d["stem"]: d for d in listed["drafts"]}
        check(sorted(drafts) == ["dog", "owl"], f"a draft per sample without an instruction ({sorted(drafts)})")
        check(all(d["source"] == f"worker:{MODEL_DIR}" and d["text"] for d in drafts.values()), f"written by the worker's model ({list(drafts.values())})")
        check(server.api("GET", f"/api/datasets/{server.dataset}").get("lockedByJobId") is None, "the drafting job never locked the dataset")
        server.api("DELETE", f"/api/datasets/{server.dataset}/drafts/dog", expect=200)

        # The CLI: draft one sample again and accept it.
        shown = server.cli("datasets", "draft", "pairs", "--stems", "dog", "--accept-all")
        captions = {f["stem"]: f["caption"] for f in server.api("GET", f"/api/datasets/{server.dataset}")["files"] if f["role"] == "caption"}
        check(shown.startswith("dog: ") and "Accepted 1 draft(s)." in shown and captions.get("dog") == shown.splitlines()[0][len("dog: "):],
              f"gomodel datasets draft --accept-all drafts on the worker and accepts ({shown!r}, {captions})")
    except Exception:
        for name in ("worker.log", "worker-serve.log"):
            path = os.path.join(work, name)
            if os.path.exists(path):
                print(f"--- {name}\n" + open(path).read()[-3000:], file=sys.stderr)
        raise
    finally:
        if worker:
            worker.terminate()
            worker.wait(timeout=30)
        server.stop()


def main():
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        through_an_endpoint(work)
        on_a_gpu_worker(work)
    print(f"drafted instructions end to end: all passed ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
