#!/usr/bin/env python3
"""The real ai-toolkit for the CPU tests: `python run.py <config>` in AI_TOOLKIT_DIR, as the worker
runs it on a GPU, after the test-only overrides of Tests/Fixtures/real-trainer-overrides.json.

The worker runs this as GOMODEL_TRAINER_COMMAND with the config it wrote (its own paths, the
job config our builder made). The overrides are the one place where a test changes that config,
each with its reason; `<TINY_MODEL_DIR>` in a value is the tiny model's folder (TINY_MODEL_DIR).
The config the worker wrote is left as it is (it is uploaded as the job's config.json); ai-toolkit
reads a copy beside it. exec keeps the process, so the worker's SIGINT and SIGKILL reach
ai-toolkit itself.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def apply(config, path, value):
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        if last not in node:
            raise SystemExit(f"real-trainer: the override {path} names a key our config does not have; fix real-trainer-overrides.json")
        node[last] = value


def filled(value, model):
    if isinstance(value, str):
        return value.replace("<TINY_MODEL_DIR>", model)
    if isinstance(value, list):
        return [filled(item, model) for item in value]
    if isinstance(value, dict):
        return {key: filled(item, model) for key, item in value.items()}
    return value


def main():
    config_path = sys.argv[-1]
    model = os.environ["TINY_MODEL_DIR"]
    with open(config_path) as f:
        job = json.load(f)
    with open(os.path.join(HERE, "real-trainer-overrides.json")) as f:
        overrides = json.load(f)["overrides"]
    for override in overrides:
        apply(job["config"], override["path"], filled(override["value"], model))
    test_config = os.path.splitext(config_path)[0] + ".real-trainer.json"
    with open(test_config, "w") as f:
        json.dump(job, f, indent=2)
    os.execv(sys.executable, [sys.executable, "run.py", test_config])


if __name__ == "__main__":
    main()
