"""The stand-in trainer (Tests/Fixtures/stand-in-trainer.py) against our own golden job config,
checking what a worker will observe, in ai-toolkit's formats (reference/ai-toolkit-cpu.md "What the
run looks like", reference/fidelity-audit.md 1, 8, 9): the tqdm training bar with its two redraws
per step, the Generating Samples bars, the save lines, optimizer.pt rewritten in place, real JPEG
samples, loss_log.db, resume, SIGINT, failures. Standard library only, like the stand-in."""
import ast
import json
import os
import re
import select
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import time

from support import check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINER = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")
GOLDEN = os.path.join(ROOT, "Tests", "TrainerCoreTests", "Golden", "qwen-image-edit-2509-32gb.json")
# tqdm's default layout: "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}{postfix}]"
RATE = r"(?:\?it/s|[ \d]\d*\.\d\d(?:it/s|s/it))"
BAR = re.compile(r"^(?P<desc>[^:]+): +(?P<percent>\d+)%\|(?P<cells>.{10})\| (?P<n>\d+)/(?P<total>\d+) "
                 r"\[(?P<elapsed>\d\d:\d\d)<(?P<remaining>\d\d:\d\d|\?), +(?P<rate>" + RATE + r")(?:, lr: (?P<lr>\d\.\de[-+]\d\d) loss: (?P<loss>\d\.\d{3}e[-+]\d\d))?\]$")
# "-I -S": no site-packages, so an import outside the standard library fails.
PYTHON = [sys.executable, "-I", "-S"]


def setup(work, steps, controls=("control_1", "control_2"), save_every=5, sample_every=10, **train):
    text = open(GOLDEN).read().replace("/workspace", work)
    config = json.loads(text)
    process = config["config"]["process"][0]
    process["train"]["steps"] = steps
    process["train"].update(train)
    process["save"].update(save_every=save_every, max_step_saves_to_keep=2)
    process["sample"]["sample_every"] = sample_every
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


def train(config, timeout=60, **env):
    """Runs the stand-in; stdout and stderr as written (text=True would turn tqdm's \r into \n)."""
    run = subprocess.run(PYTHON + [TRAINER, config], capture_output=True, timeout=timeout, env={**os.environ, **env})
    return subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(), run.stderr.decode())


def redraws(stderr, desc):
    """Every tqdm redraw of the bars labelled `desc`, parsed; tqdm pads a shorter redraw with spaces."""
    drawn = [BAR.match(line.rstrip(" ")) for line in re.split(r"[\r\n]", stderr) if line.startswith(desc + ":")]
    return drawn if all(drawn) else None


def header(path):
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(length))


def jpeg_size(path):
    """(width, height) from the SOF0 segment of a baseline JPEG that starts with SOI and ends with EOI; None otherwise."""
    data = open(path, "rb").read()
    if not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):
        return None
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
        if marker == 0xC0:
            precision, height, width, components = struct.unpack(">BHHB", data[at + 4:at + 10])
            return (width, height) if precision == 8 and components in (1, 3) else None
        if marker == 0xDA:
            return None
        at += 2 + length
    return None


def loss_of(step):
    return f"{0.5 / (1 + step):.3e}"


def main():
    print("stand-in trainer")
    tree = ast.parse(open(TRAINER).read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    standard = set(getattr(sys, "stdlib_module_names", imported))  # Python 3.10+; the -I -S runs below check it too
    check(imported and imported <= standard, f"it imports only the standard library ({', '.join(sorted(imported))}); every run here is python3 -I -S")

    with tempfile.TemporaryDirectory() as work:
        config, name, out = setup(work, 20)
        run = train(config, STAND_IN_STEP_SECONDS="0.01")
        check(run.returncode == 0 and "Result:" not in run.stdout, "a run completes with exit 0 and, like run.py, no Result block")
        lines = run.stdout.splitlines()
        check(lines[:8] == ["Running 1 job", "", "#" * 45, f"# Running job: {name}", "#" * 45, "", "", "Running  1 process"], "run.py's and the job's opening lines")
        bars = redraws(run.stderr, name)
        check(bars and bars[-1]["n"] == "20" and bars[-1]["total"] == "20" and bars[-1]["lr"] == "1.0e-04", "the tqdm bar is ai-toolkit's, labelled with config.name")
        pairs = {(int(b["n"]), b["loss"]) for b in bars if b["loss"]}
        check(all((step, loss_of(step)) in pairs for step in range(20)) and all(loss == loss_of(n) or n > 0 and loss == loss_of(n - 1) for n, loss in pairs),
              "steps faster than tqdm's mininterval: the set_postfix redraw (k, loss of step k) is never dropped, update's (k, loss of k-1) may be")
        check(len(pairs) < 39, "… and tqdm drops some update redraws")
        check(run.stderr.count("\r" + name + ":") == len(bars) and "\n" + name not in run.stderr and "\r\n" not in run.stderr,
              "every redraw starts with \\r, as tqdm's status printer writes it")
        check(run.stderr.endswith("]\n") and re.search(r"\| 20/20 [^\r]*\]\n", run.stderr), "closing a bar draws it once more and ends the line (leave=True)")
        for save in (5, 10, 15):
            block = ["", f"Saving at step {save}", f"Saved checkpoint to {out}/{name}_{save:09d}.safetensors", f"Saved optimizer to {out}/optimizer.pt"]
            at = lines.index(f"Saving at step {save}") - 1
            check(lines[at:at + 4] == block, f"save at step {save}: a blank line, Saving at step, Saved checkpoint to, Saved optimizer to")
        at = lines.index(f"Saved checkpoint to {out}/{name}.safetensors")
        check(lines[at + 1] == f"Saved optimizer to {out}/optimizer.pt" and "Saving at step 20" not in lines, "the final LoRA is saved without a Saving at step line")
        check(f"Removing old save: {out}/{name}_000000005.safetensors" in lines, "old saves are removed with ai-toolkit's line")
        files = sorted(os.listdir(out))
        check(f"{name}.safetensors" in files and f"{name}_000000015.safetensors" in files and f"{name}_000000005.safetensors" not in files,
              "checkpoints every save_every, newest 2 kept, final LoRA")
        check(all(stat.S_IMODE(os.stat(os.path.join(out, f)).st_mode) == 0o600 for f in files if f.endswith(".safetensors")), "checkpoints have mode 0600")
        check(json.loads(header(os.path.join(out, f"{name}.safetensors"))["__metadata__"]["training_info"])["step"] == 20, "safetensors header with training_info")

        database = sqlite3.connect(os.path.join(out, "loss_log.db"))
        check(database.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "loss_log.db is in WAL mode")
        columns = {table: [(c[1], c[2], c[3], c[5]) for c in database.execute(f"PRAGMA table_info({table})")] for table in ("steps", "metric_keys", "metrics")}
        check(columns == {"steps": [("step", "INTEGER", 0, 1), ("wall_time", "REAL", 1, 0)],
                          "metric_keys": [("key", "TEXT", 0, 1), ("first_seen_step", "INTEGER", 0, 0), ("last_seen_step", "INTEGER", 0, 0)],
                          "metrics": [("step", "INTEGER", 1, 1), ("key", "TEXT", 1, 2), ("value_real", "REAL", 0, 0), ("value_text", "TEXT", 0, 0)]},
              "loss_log.db has the UI logger's tables and keys")
        check([row[2] for row in database.execute("PRAGMA foreign_key_list(metrics)")] == ["steps"] and
              database.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'idx_metrics_key_step'").fetchone()[0] == 1, "metrics refers to steps, indexed by key and step")
        logged = [row[0] for row in database.execute("SELECT step FROM metrics WHERE key = 'loss/loss' ORDER BY step")]
        check(logged == list(range(1, 20)) and [row[0] for row in database.execute("SELECT step FROM steps ORDER BY step")] == logged,
              "a loss per step, but not the run's first (step 0)")
        check(database.execute("SELECT key, first_seen_step, last_seen_step FROM metric_keys ORDER BY key").fetchall() == [("learning_rate", 1, 19), ("loss/loss", 1, 19)],
              "metric_keys: learning_rate and loss/loss with the steps they were seen")
        shown = {int(b["n"]): b["loss"] for b in bars if b["loss"] and b["n"] != "20"}
        check(all(f"{value:.3e}" == shown[step] for step, value in database.execute("SELECT step, value_real FROM metrics WHERE key = 'loss/loss'") if step in shown),
              "loss_log.db has the loss the bar shows for the same step")
        database.close()

        samples = sorted(os.listdir(os.path.join(out, "samples")))
        named = [re.fullmatch(r"(\d{13})__(\d{9})_(\d)\.jpg", s) for s in samples if not s.startswith(".")]
        check(all(named) and sorted((int(m[2]), int(m[3])) for m in named) == [(0, 0), (0, 1), (10, 0), (10, 1), (20, 0), (20, 1)],
              "samples <unix_ms>__<step:09>_<i>.jpg: baseline, every sample_every, final")
        check(all(jpeg_size(os.path.join(out, "samples", s)) == (1024, 1024) for s in samples if not s.startswith(".")),
              "samples are baseline JPEGs (SOI … EOI) of the configured 1024x1024")
        check(sorted(os.listdir(os.path.join(out, "samples", ".thumbs"))) == sorted(s + ".jpg" for s in samples if not s.startswith(".")) and
              all(jpeg_size(os.path.join(out, "samples", ".thumbs", t)) == (300, 300) for t in os.listdir(os.path.join(out, "samples", ".thumbs"))),
              "a 300x300 thumbnail per sample in samples/.thumbs")
        check(os.listdir(os.path.join(out, "samples", ".tmp")) == [], "samples are written in samples/.tmp and moved out")
        generating = [line for line in re.split(r"[\r\n]", run.stderr) if line.startswith("Generating Samples")]
        check(all(BAR.match(line.rstrip(" ")) for line in generating) and generating[0].startswith("Generating Samples:   0%|          | 0/2 [00:00<?, ?it/s]"),
              "sampling draws tqdm's Generating Samples bar")
        check(len(re.findall(r"Generating Samples: 100%\|██████████\| 2/2 \[[^\]]*\] *\n", run.stderr)) == 3, "each of the 3 samplings ends its bar at 2/2 with a newline")
        check(lines.count("Generating baseline samples before training") == 1 and "Generating Images" not in run.stdout + run.stderr, "a baseline sampling on a fresh run")

        config, name, out = setup(work, 30)
        resumed = train(config)
        lines = resumed.stdout.splitlines()
        at = lines.index(f"#### IMPORTANT RESUMING FROM {out}/{name}.safetensors ####")
        check(resumed.returncode == 0 and lines[at:at + 6] == [
            f"#### IMPORTANT RESUMING FROM {out}/{name}.safetensors ####", f"Loading from {out}/{name}.safetensors", "Found step 20 in metadata, starting from there",
            f"Loading optimizer state from {out}/optimizer.pt", "stand-in: optimizer state of step 20", "Updating optimizer LR from params"],
              "a rerun resumes from the newest checkpoint and loads optimizer.pt")
        check("Generating baseline samples before training" not in resumed.stdout, "no baseline sampling on resume")
        bars = redraws(resumed.stderr, name)
        check(bars[0]["n"] == "20" and bars[0]["rate"] == "?it/s" and bars[0]["loss"] is None, "the resumed bar starts at 20/30 (initial=step)")
        database = sqlite3.connect(os.path.join(out, "loss_log.db"))
        logged = [row[0] for row in database.execute("SELECT step FROM metrics WHERE key = 'loss/loss' ORDER BY step")]
        check(logged == list(range(1, 20)) + list(range(21, 30)), "the resumed run logs 21…29, not its first step 20")
        database.close()

    with tempfile.TemporaryDirectory() as work:
        # Steps slower than tqdm's mininterval (0.1 s): both redraws of each step are drawn.
        config, name, out = setup(work, 8, save_every=5, sample_every=100)
        run = train(config, STAND_IN_STEP_SECONDS="0.12")
        seen = [(int(b["n"]), b["loss"]) for b in redraws(run.stderr, name)]
        expected = [((0, None), True)]
        for step in range(8):
            expected.append(((step, loss_of(step)), True))  # set_postfix_str: the new loss at the old count, always drawn
            # update: the new count. After the save at step 5 the bar is unpaused just before update(), so tqdm skips
            # that redraw, and the one after it can fall below tqdm's dynamic miniters.
            expected.append(((step + 1, loss_of(step)), step < 5))
        expected[-1] = ((8, loss_of(7)), True)  # close draws it (again)
        matched = [redraw for at, redraw in enumerate(seen) if at == 0 or seen[at - 1] != redraw]
        for redraw, required in expected:
            if matched and matched[0] == redraw:
                matched.pop(0)
            elif required:
                break
        else:
            matched = matched or None
        check(matched is None, "two redraws per step in tqdm's order, set_postfix_str (k, loss of k) then update (k+1, loss of k)"
              + ("" if matched is None else f": {seen}"))
        check(all(b["rate"] == "?it/s" for b in redraws(run.stderr, name)[:2]) and re.search(r"\d\.\d\dit/s", run.stderr), "tqdm's ?it/s, then N.NNit/s")

    with tempfile.TemporaryDirectory() as work:
        config, name, out = setup(work, 3, disable_sampling=True)
        slow = train(config, STAND_IN_STEP_SECONDS="1.05")
        rates = [b["rate"] for b in redraws(slow.stderr, name)]
        check(slow.returncode == 0 and any(r.endswith("s/it") for r in rates) and "Skipping first sample due to config setting" in slow.stdout and
              "Generating Samples" not in slow.stderr and not os.path.exists(os.path.join(out, "samples")),
              "slower than 1 it/s the rate reads N.NNs/it; disable_sampling samples nothing" + ("" if slow.returncode == 0 else f": {rates}"))

    with tempfile.TemporaryDirectory() as work:
        # optimizer.pt at every save: same file, same size, the save's own state; a resume says which it loaded.
        config, name, out = setup(work, 20)
        optimizer = os.path.join(out, "optimizer.pt")
        first = train(config, STAND_IN_CRASH_AT_STEP="7")
        state_5, inode = open(optimizer, "rb").read(), os.stat(optimizer).st_ino
        check(first.returncode == 1 and "Loading optimizer state" not in first.stdout, "a fresh run has no optimizer state to load")
        second = train(config, STAND_IN_CRASH_AT_STEP="12")
        state_10 = open(optimizer, "rb").read()
        check(second.returncode == 1 and "Found step 5 in metadata" in second.stdout and "stand-in: optimizer state of step 5" in second.stdout,
              "the resume loads the optimizer state of step 5")
        check(len(state_10) == len(state_5) and state_10 != state_5 and os.stat(optimizer).st_ino == inode,
              "optimizer.pt is rewritten in place at the next save: same size, different content")
        open(optimizer, "wb").write(state_5)  # what an uploader that skips same-size files would restore
        third = train(config)
        check(third.returncode == 0 and "Found step 10 in metadata" in third.stdout and "stand-in: optimizer state of step 5" in third.stdout,
              "a resume pairing checkpoint 10 with step 5's optimizer state says so (ai-toolkit loads it without a check)")
        open(optimizer, "wb").write(b"not a state")
        fourth = train(config)
        check(fourth.returncode == 0 and f"Failed to load optimizer state from {optimizer}" in fourth.stdout, "an unreadable optimizer.pt is reported and training goes on")

    with tempfile.TemporaryDirectory() as work:
        config, name, out = setup(work, 1000)
        process = subprocess.Popen(PYTHON + [TRAINER, config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "STAND_IN_STEP_SECONDS": "0.01"})
        # The bar's first draw comes after its SIGINT handler is in place.
        drawn, deadline = b"", time.time() + 30
        while b"\r" not in drawn and time.time() < deadline:
            if select.select([process.stderr], [], [], 1)[0]:
                drawn += os.read(process.stderr.fileno(), 4096)
        check(b"\r" in drawn, "the training bar is drawn")
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
        check(process.returncode == 0 and stdout.endswith("\n" + "=" * 40 + "\nJob stopped\n" + "=" * 40 + "\n"), "SIGINT stops it with exit 0, like ai-toolkit")

    with tempfile.TemporaryDirectory() as work:
        config, _, _ = setup(work, 10, controls=("control_1",), save_every=10, sample_every=10)
        fewer = train(config, STAND_IN_STEP_SECONDS="0")
        check(fewer.returncode == 0, f"samples with fewer controls than the config's folders train, as in ai-toolkit ({fewer.stdout[-300:]})")

    with tempfile.TemporaryDirectory() as work:
        # A sample may have fewer controls than the config lists (ai-toolkit takes those it finds);
        # one with none fails.
        config, _, _ = setup(work, 20, controls=())
        missing = train(config)
        check(missing.returncode == 1 and "Error running job: Missing control images for QwenImageEditPlusModel\n\n" + "=" * 40 + "\nResult:\n - 0 completed jobs\n - 1 failure\n" in missing.stdout and
              missing.stderr.startswith("Traceback") and missing.stderr.endswith("ValueError: Missing control images for QwenImageEditPlusModel\n"),
              "a sample without a control fails like ai-toolkit: the error and Result on stdout, the traceback on stderr")
        config, _, _ = setup(work, 20)
        crash = train(config, STAND_IN_CRASH_AT_STEP="7")
        check(crash.returncode == 1 and "Error running job: stand-in crash requested" in crash.stdout and "Traceback" in crash.stderr
              and "RuntimeError: stand-in crash requested" in crash.stderr, "told to crash at a step, it fails as an exception in ai-toolkit's loop does")
    print("stand-in trainer: all passed")


if __name__ == "__main__":
    main()
