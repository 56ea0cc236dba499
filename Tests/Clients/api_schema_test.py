"""The API against its own OpenAPI document, with schemathesis (property-based: examples, coverage,
fuzzing and stateful phases, every check).

Usage: python api_schema_test.py path/to/gomodel   (in .venv-tools, which has schemathesis)
`gomodel serve` runs on a fresh data folder with a sound dataset and a queued job (so the job and
sample routes meet real ids). Every operation is run, DELETE /api/tokens/{id} included, with
throwaway tokens (schemathesis_hooks.py). Any failure of any check fails the test; the JSON report
and schemathesis' own output are kept in test-output/schemathesis. ST_MAX_EXAMPLES (default 50) and
ST_SEED (default 1: the same cases every run; set another to explore) tune the run.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from support import check, gomodel_cli, own_environment, push_pairs, sign_in, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(os.getcwd(), "test-output", "schemathesis")


def main():
    started = time.time()
    shutil.rmtree(OUTPUT, ignore_errors=True)
    os.makedirs(OUTPUT)
    with tempfile.TemporaryDirectory() as work:
        env = own_environment()
        env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
        server = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=env,
                                  stdout=open(os.path.join(OUTPUT, "serve.log"), "w"), stderr=subprocess.STDOUT)
        try:
            base = wait_serving(env["GOMODEL_DATA_DIR"])
            cli = gomodel_cli(GOMODEL, env)
            token = sign_in(cli, base, "schema@example.com")
            push_pairs(cli, work)
            job_id = cli("train", "--dataset", "pairs", "--steps", "100").split("Queued job ")[1].split(" ")[0]
            request = urllib.request.Request(base + "/api/jobs/" + job_id, headers={"Authorization": f"Bearer {token}"})
            dataset_id = json.load(urllib.request.urlopen(request, timeout=10))["datasetId"]

            command = [os.path.join(os.path.dirname(sys.executable), "st"), "--config-file", os.path.join(HERE, "schemathesis.toml"),
                       "run", base + "/api/openapi.json", "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
                       "--max-examples", os.environ.get("ST_MAX_EXAMPLES", "50"), "--seed", os.environ.get("ST_SEED", "1"),
                       "--workers", "1", "--continue-on-failure", "--no-color",
                       "--report", "json", "--report-json-path", os.path.join(OUTPUT, "report.json")]
            hooks_env = dict(env, PYTHONPATH=HERE, SCHEMATHESIS_HOOKS="schemathesis_hooks", ST_BASE=base, ST_TOKEN=token,
                             ST_DATASET_ID=dataset_id, ST_JOB_ID=job_id)
            run = subprocess.run(command, env=hooks_env, capture_output=True, text=True, timeout=900, cwd=work)
            open(os.path.join(OUTPUT, "schemathesis.txt"), "w").write(run.stdout + run.stderr)
            report = json.load(open(os.path.join(OUTPUT, "report.json")))
            cases = report["test_cases"]
            operations = report["operations"]
            print(f"schemathesis {report['schemathesis_version']}: {operations['tested']} of {operations['total']} operations, "
                  f"{cases['generated']} test cases, {cases['unique_failures']} unique failures, {len(report['errors'])} errors")
            for failure in report["failures"]:
                print(f"  {failure['code']} {failure['title']}: {failure['count']} in {', '.join(failure['operations'])}")
            if report["failures"] or report["errors"] or run.returncode != 0:
                print(run.stdout[-20000:])
            check(operations["tested"] == operations["total"], "every operation was tested")
            check(not report["errors"], "no operation errored")
            check(not report["failures"], f"no check failed (details in {OUTPUT}/schemathesis.txt)")
            check(run.returncode == 0, "schemathesis exited 0")
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"api_schema_test passed in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
