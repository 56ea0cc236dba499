"""RunPod's own SDK against our queue: runpod-python's serverless worker (`runpod.serverless.start`)
takes jobs from `gomodel serve`'s built-in queue, configured only through the SDK's documented
variables (RUNPOD_WEBHOOK_GET_JOB, RUNPOD_WEBHOOK_POST_OUTPUT, RUNPOD_WEBHOOK_PING,
RUNPOD_AI_API_KEY, RUNPOD_POD_ID).

Usage: python runpod_sdk_e2e.py path/to/gomodel   (in .venv-tools, which has runpod==1.12.0)
Checks, for jobs created with the CLI: progress sent with `runpod.serverless.progress_update`
shows on the job while it runs and the returned output completes it; a cancel reaches the SDK's
handler (its task is cancelled) and ends the job cancelled; an exception in the handler fails the
job with the exception as its error and the traceback as its detail; the worker survives all three.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from support import check, gomodel_cli, own_environment, push_pairs, sign_in, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])

# The handler's behaviour per job comes from files the test writes, named by the job's id.
HANDLER = r'''
import asyncio, os, runpod
WORK = os.environ["SDK_TEST_DIR"]

def marker(name, job):
    return os.path.join(WORK, name + "-" + job["input"]["trainer_job_id"])

async def handler(job):
    while not os.path.exists(marker("behaviour", job)):
        await asyncio.sleep(0.05)
    behaviour = open(marker("behaviour", job)).read().strip()
    runpod.serverless.progress_update(job, {"phase": "training", "step": 5, "total_steps": 10, "loss": 0.5, "message": "halfway (runpod-python)"})
    if behaviour == "raise":
        raise ValueError("bad pair: no target image")
    try:
        while not os.path.exists(marker("release", job)):
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        open(marker("cancelled", job), "w").close()
        raise
    return {"steps": 10, "final_loss": 0.125, "artifacts": []}

runpod.serverless.start({"handler": handler})
'''


def main():
    with tempfile.TemporaryDirectory() as work:
        env = own_environment()
        env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
        serve_log = open(os.path.join(work, "serve.log"), "w")
        server = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(env, LOG_LEVEL="info"), stdout=serve_log, stderr=subprocess.STDOUT)
        sdk = None
        sdk_log_path = os.path.join(work, "sdk.log")
        try:
            base = wait_serving(env["GOMODEL_DATA_DIR"])
            cli = gomodel_cli(GOMODEL, env)
            token = sign_in(cli, base, "sdk@example.com")
            push_pairs(cli, work)
            key = cli("workers", "create-key", "--name", "sdk").strip()

            handler = os.path.join(work, "handler.py")
            open(handler, "w").write(HANDLER)
            queue = f"{base}/v2/local"
            sdk_env = dict(env, SDK_TEST_DIR=work,
                           RUNPOD_WEBHOOK_GET_JOB=queue + "/job-take/$ID?gpu=cpu",
                           RUNPOD_WEBHOOK_POST_OUTPUT=queue + "/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu",
                           RUNPOD_WEBHOOK_PING=queue + "/ping/$RUNPOD_POD_ID?gpu=cpu",
                           RUNPOD_AI_API_KEY=key, RUNPOD_POD_ID="sdk-pod-1", RUNPOD_PING_INTERVAL="1000",
                           # Its start-up checks probe 8.8.8.8 and the GPU, neither of which a test machine has.
                           RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true", RUNPOD_SKIP_GPU_CHECK="true")
            sdk = subprocess.Popen([sys.executable, handler], env=sdk_env, stdout=open(sdk_log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)

            def api(path):
                request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
                return json.load(urllib.request.urlopen(request, timeout=10))

            def wait(what, condition, timeout=60):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    if sdk.poll() is not None:
                        raise AssertionError(f"the SDK worker exited ({sdk.returncode}) while waiting for {what}")
                    value = condition()
                    if value:
                        return value
                    time.sleep(0.1)
                raise AssertionError("timed out waiting for " + what)

            def start(behaviour):
                job_id = cli("train", "--dataset", "pairs", "--steps", "100").split("Queued job ")[1].split(" ")[0]
                open(os.path.join(work, f"behaviour-{job_id.lower()}"), "w").write(behaviour)
                return job_id

            def status_is(job_id, *statuses):
                return lambda: (lambda job: job if job["status"] in statuses else None)(api(f"/api/jobs/{job_id}"))

            def halfway(job_id):
                return lambda: (lambda job: job if job["status"] == "running" and (job.get("progress") or {}).get("step") == 5 else None)(api(f"/api/jobs/{job_id}"))

            print("a job runs to completion, its progress shown while it runs")
            job_id = start("complete")
            running = wait("the SDK's progress update", halfway(job_id))
            check(running["progress"].get("message") == "halfway (runpod-python)" and running["progress"].get("totalSteps") == 10,
                  f"progress_update shows on the running job ({running['progress']})")
            open(os.path.join(work, f"release-{job_id.lower()}"), "w").close()
            done = wait("completion", status_is(job_id, "completed", "failed"))
            check(done["status"] == "completed" and done["progress"].get("loss") == 0.125 and done["progress"].get("step") == 10,
                  f"the handler's output completes the job ({done['status']}, {done['progress']})")

            print("a cancel reaches the SDK's handler")
            job_id = start("wait")
            wait("the SDK's progress update", halfway(job_id))
            cli("jobs", "cancel", job_id)
            ended = wait("the cancel", status_is(job_id, "cancelled", "failed", "completed"))
            check(ended["status"] == "cancelled", f"the job ends cancelled ({ended['status']})")
            wait("the handler's task to be cancelled", lambda: os.path.exists(os.path.join(work, f"cancelled-{job_id.lower()}")), timeout=30)
            check(True, "the SDK cancelled the handler's task (job-stop reached it)")

            print("an exception in the handler fails the job")
            job_id = start("raise")
            failed = wait("the failure", status_is(job_id, "failed", "completed", "cancelled"))
            check(failed["status"] == "failed" and failed.get("error") == "ValueError: bad pair: no target image",
                  f"the job fails with the handler's exception as its error ({failed['status']}: {failed.get('error')})")
            check("Traceback (most recent call last)" in (failed.get("errorDetail") or ""), "and its traceback as the detail")

            check(sdk.poll() is None, "the SDK worker is still taking jobs after all three")
            sdk.send_signal(signal.SIGTERM)
            check(sdk.wait(timeout=30) == 0, "and exits 0 on SIGTERM with no job in hand")
        except Exception:
            serve_log.flush()
            print("--- server log", file=sys.stderr)
            print(open(serve_log.name).read()[-5000:], file=sys.stderr)
            if os.path.exists(sdk_log_path):
                print("--- SDK worker log", file=sys.stderr)
                print(open(sdk_log_path).read()[-5000:], file=sys.stderr)
            raise
        finally:
            if sdk is not None and sdk.poll() is None:
                os.killpg(sdk.pid, signal.SIGKILL)
            server.terminate()
            server.wait(timeout=20)
    print("runpod-python against the built-in queue: all passed")


if __name__ == "__main__":
    main()
