#!/usr/bin/env python3
"""Stand-in for ostris/ai-toolkit's `run.py <config.json>` where no GPU is present.

Never used unless configured (GOMODEL_TRAINER_COMMAND). It behaves as ai-toolkit does as far as a
worker can observe (reference/ai-toolkit.md §2, §3): reads the same job config, fails the way
ai-toolkit fails on a missing control image, prints the tqdm training bar on stderr (redrawn with
\\r, labelled with config.name), writes loss_log.db, writes valid safetensors checkpoints
`<name>_<step:09>.safetensors` every save_every steps keeping the newest max_step_saves_to_keep
(by ctime), optimizer.pt, sample images `samples/<ms>__<step:09>_<i>.jpg`, and finally
`<name>.safetensors`; on SIGINT prints "Job stopped" and exits 0; re-run with the same config it
resumes from the newest checkpoint (training_info.step in its metadata).

Environment (tests only): STAND_IN_STEP_SECONDS (default 0.02), STAND_IN_CRASH_AT_STEP (exit 1
with a traceback at that step), STAND_IN_HANG_AFTER_FINISH=1 (after the final LoRA and samples,
go silent, ignore SIGINT and never exit).
"""
import json
import os
import signal
import sqlite3
import struct
import sys
import time

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def fail(message):
    print(f"Error running job: {message}", file=sys.stderr, flush=True)
    print("Result:\n - 0 completed jobs\n - 1 failure", flush=True)
    sys.exit(1)


def write_safetensors(path, step, meta):
    """A valid safetensors file: little-endian header length, JSON header, tensor bytes."""
    data = struct.pack("<4f", 0.1, 0.2, 0.3, float(step))
    metadata = {"training_info": json.dumps({"step": step, "epoch": 0}), "ss_output_name": meta.get("name", ""),
                "software": json.dumps({"name": "stand-in-trainer"})}
    metadata.update({k: str(v) for k, v in meta.items()})
    header = {"diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "__metadata__": metadata}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    temporary = path + ".tmp"
    with open(temporary, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + data)
    os.replace(temporary, path)


def read_step(path):
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
    return int(json.loads(header["__metadata__"]["training_info"])["step"])


def main():
    config_path = sys.argv[-1]
    with open(config_path) as f:
        config = json.load(f)
    name = config["config"]["name"]
    process = config["config"]["process"][0]
    meta = config.get("meta", {})
    print(f"#############################################\n# Running job: {name}\n#############################################", flush=True)
    dataset = process["datasets"][0]
    targets = sorted(n for n in os.listdir(dataset["folder_path"]) if n.lower().endswith(IMAGE_EXTENSIONS))
    print(f"Found {len(targets)} images", flush=True)
    for target in targets:
        stem = os.path.splitext(target)[0]
        for control in dataset["control_path"]:
            if not any(os.path.exists(os.path.join(control, stem + ext)) for ext in IMAGE_EXTENSIONS):
                fail("Missing control images for QwenImageEditPlusModel")
    train, save, sample = process["train"], process["save"], process["sample"]
    steps, save_every, keep = train["steps"], save["save_every"], save["max_step_saves_to_keep"]
    folder = os.path.join(process["training_folder"], name)
    os.makedirs(os.path.join(folder, "samples"), exist_ok=True)

    start = 0
    checkpoints = sorted((os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(name) and n.endswith(".safetensors")), key=os.path.getctime)
    if checkpoints:
        print(f"#### IMPORTANT RESUMING FROM {checkpoints[-1]} ####", flush=True)
        start = read_step(checkpoints[-1])
        print(f"Found step {start} in metadata, starting from there", flush=True)

    database = sqlite3.connect(os.path.join(folder, "loss_log.db"))
    database.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS steps(step INTEGER PRIMARY KEY, wall_time REAL);
        CREATE TABLE IF NOT EXISTS metric_keys(key TEXT PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS metrics(step INTEGER, key TEXT, value_real REAL, value_text TEXT);
        INSERT OR IGNORE INTO metric_keys VALUES ('loss/loss'), ('learning_rate');
    """)

    stopped = []
    signal.signal(signal.SIGINT, lambda *_: stopped.append(True))

    def samples(step):
        if train.get("disable_sampling"):
            return
        print("Generating Images", flush=True)
        for index, _ in enumerate(sample.get("samples", [])):
            path = os.path.join(folder, "samples", f"{int(time.time() * 1000)}__{step:09d}_{index}.jpg")
            with open(path + ".tmp", "wb") as f:
                f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(64) + b"\xff\xd9")
            os.replace(path + ".tmp", path)

    def save_checkpoint(step):
        print(f"Saving at step {step}", flush=True)
        write_safetensors(os.path.join(folder, f"{name}_{step:09d}.safetensors"), step, meta)
        with open(os.path.join(folder, "optimizer.pt"), "wb") as f:
            f.write(struct.pack("<I", step))
        saves = sorted((os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(name + "_") and n.endswith(".safetensors")), key=os.path.getctime)
        for old in saves[:-keep]:
            print(f"Removing old save: {old}", flush=True)
            os.remove(old)

    if start == 0 and not train.get("skip_first_sample"):
        print("Generating baseline samples before training", flush=True)
        samples(0)
    delay = float(os.environ.get("STAND_IN_STEP_SECONDS", "0.02"))
    crash_at = int(os.environ.get("STAND_IN_CRASH_AT_STEP", "-1"))
    began = time.time()
    for step in range(start, steps):
        if stopped:
            print("\nJob stopped", flush=True)
            database.close()
            sys.exit(0)
        if step == crash_at:
            print("Traceback (most recent call last):\n  File \"run.py\", line 90, in <module>\nRuntimeError: stand-in crash requested", file=sys.stderr, flush=True)
            sys.exit(1)
        time.sleep(delay)
        loss = 0.5 / (1 + step)
        done = step + 1 - start
        elapsed = time.time() - began
        rate = done / elapsed if elapsed > 0 else 0
        left = (steps - step - 1) / rate if rate > 0 else 0
        speed = f"{rate:5.2f}it/s" if rate >= 1 else f"{1 / rate:5.2f}s/it"
        percent = int((step + 1) * 100 / steps)
        bar = ("█" * (percent // 10)).ljust(10)
        sys.stderr.write(f"\r{name}: {percent:3d}%|{bar}| {step + 1}/{steps} [{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}<{int(left) // 60:02d}:{int(left) % 60:02d}, {speed}, lr: {train['lr']:.1e} loss: {loss:.3e}]")
        sys.stderr.flush()
        if step > start:
            database.execute("INSERT INTO steps VALUES (?, ?)", (step, time.time()))
            database.execute("INSERT INTO metrics VALUES (?, 'loss/loss', ?, NULL)", (step, loss))
            database.commit()
        if (step + 1) % save_every == 0 and step + 1 < steps:
            sys.stderr.write("\n")
            save_checkpoint(step + 1)
            if sample["sample_every"] and (step + 1) % sample["sample_every"] == 0:
                samples(step + 1)
    sys.stderr.write("\n")
    write_safetensors(os.path.join(folder, f"{name}.safetensors"), steps, meta)
    samples(steps)
    database.close()
    print("Result:\n - 1 completed job", flush=True)
    if os.environ.get("STAND_IN_HANG_AFTER_FINISH") == "1":
        # What a trainer stuck in its teardown looks like: silent, deaf to SIGINT, never exiting.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            time.sleep(60)


if __name__ == "__main__":
    main()
