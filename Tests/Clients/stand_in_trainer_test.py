"""The stand-in trainer (Tests/Fixtures/stand-in-trainer.py) against our own golden job config,
checking what a worker will observe: progress bar, files, resume, SIGINT, failures."""
import json
import os
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time

from support import check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINER = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")
GOLDEN = os.path.join(ROOT, "Tests", "TrainerCoreTests", "Golden", "qwen-image-edit-2509-32gb.json")
BAR = re.compile(r"^(\S+): +\d+%\|.*\| (\d+)/(\d+) \[\d+:\d+<\d+:\d+, +[\d.]+(it/s|s/it), lr: \S+ loss: (\S+)\]$")


def setup(work, steps, controls=("control_1", "control_2")):
    text = open(GOLDEN).read().replace("/workspace", work)
    config = json.loads(text)
    process = config["config"]["process"][0]
    process["train"]["steps"] = steps
    process["save"].update(save_every=5, max_step_saves_to_keep=2)
    process["sample"]["sample_every"] = 10
    dataset = process["datasets"][0]
    os.makedirs(dataset["folder_path"], exist_ok=True)
    for folder in dataset["control_path"]:
        os.makedirs(folder, exist_ok=True)
    for stem in ("cat", "dog", "owl"):
        open(os.path.join(dataset["folder_path"], stem + ".png"), "wb").write(b"\x89PNG")
        for folder in dataset["control_path"]:
            if os.path.basename(folder) in controls:
                open(os.path.join(folder, stem + ".png"), "wb").write(b"\x89PNG")
    path = os.path.join(work, "config.json")
    json.dump(config, open(path, "w"))
    return path, config["config"]["name"], os.path.join(process["training_folder"], config["config"]["name"])


def header(path):
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(length))


def main():
    print("stand-in trainer")
    with tempfile.TemporaryDirectory() as work:
        config, name, out = setup(work, 20)
        run = subprocess.run([sys.executable, TRAINER, config], capture_output=True, text=True, timeout=60)
        check(run.returncode == 0 and "1 completed job" in run.stdout, "a run completes")
        bars = [BAR.match(line) for line in run.stderr.replace("\r", "\n").splitlines() if line.startswith(name + ":")]
        check(bars and all(bars) and bars[-1].group(2) == "20" and bars[-1].group(3) == "20", "the tqdm bar is ai-toolkit's, labelled with config.name")
        files = sorted(os.listdir(out))
        check(f"{name}.safetensors" in files and f"{name}_000000015.safetensors" in files and f"{name}_000000005.safetensors" not in files,
              "checkpoints every save_every, newest 2 kept, final LoRA")
        check(json.loads(header(os.path.join(out, f"{name}.safetensors"))["__metadata__"]["training_info"])["step"] == 20, "safetensors header with training_info")
        rows = sqlite3.connect(os.path.join(out, "loss_log.db")).execute("SELECT COUNT(*), MAX(step) FROM metrics WHERE key = 'loss/loss'").fetchone()
        check(rows == (19, 19), "loss_log.db has a loss per step (not the first)")
        samples = sorted(os.listdir(os.path.join(out, "samples")))
        check(any(re.match(r"\d+__000000000_0\.jpg", s) for s in samples) and any("__000000020_1.jpg" in s for s in samples), "baseline and final samples")

        config, name, out = setup(work, 30)
        resumed = subprocess.run([sys.executable, TRAINER, config], capture_output=True, text=True, timeout=60)
        check(resumed.returncode == 0 and "Found step 20 in metadata" in resumed.stdout, "a rerun resumes from the newest checkpoint")

    with tempfile.TemporaryDirectory() as work:
        config, name, out = setup(work, 1000)
        process = subprocess.Popen([sys.executable, TRAINER, config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "STAND_IN_STEP_SECONDS": "0.01"})
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
        check(process.returncode == 0 and "Job stopped" in stdout, "SIGINT stops it with exit 0, like ai-toolkit")

    with tempfile.TemporaryDirectory() as work:
        config, _, _ = setup(work, 20, controls=("control_1",))
        missing = subprocess.run([sys.executable, TRAINER, config], capture_output=True, text=True, timeout=60)
        check(missing.returncode == 1 and "Missing control images for QwenImageEditPlusModel" in missing.stderr, "a missing control fails like ai-toolkit")
        config, _, _ = setup(work, 20)
        crash = subprocess.run([sys.executable, TRAINER, config], capture_output=True, text=True, timeout=60, env={**os.environ, "STAND_IN_CRASH_AT_STEP": "7"})
        check(crash.returncode == 1 and "Traceback" in crash.stderr, "told to crash at a step, it does")
    print("stand-in trainer: all passed")


if __name__ == "__main__":
    main()
