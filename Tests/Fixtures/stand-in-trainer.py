#!/usr/bin/env python3
"""Stand-in for ostris/ai-toolkit's `run.py <config.json>` where no GPU is present.

Never used unless configured (GOMODEL_TRAINER_COMMAND). Standard library only (it runs on the
system python3). It behaves as ai-toolkit does as far as a worker can observe
(reference/ai-toolkit.md §2, §3; reference/ai-toolkit-cpu.md "What the run looks like"):

- reads the same job config; a sample without any control image fails as ai-toolkit fails: `Error running
  job: …` and the `Result:` block on stdout, the traceback on stderr, exit 1;
- the training bar on stderr as tqdm draws it (`\\r` redraws, labelled with config.name, created
  with initial=<resumed step>): each step is drawn twice, first `set_postfix_str` with the step's
  `lr: … loss: …` at the old count, then `update` to the new count, which tqdm drops while less
  than mininterval (0.1 s) or miniters have passed since its last one;
- `Generating Samples` bars for sampling (`Generating baseline samples before training` first on
  a fresh run), real JPEGs `samples/<unix_ms>__<step:09>_<i>.jpg` of the configured size written
  in `samples/.tmp/` then moved, with 300x300 thumbnails in `samples/.thumbs/`;
- at step N (N % save_every == 0, not the first step of the run): `Saving at step N`, the
  checkpoint `<name>_<N:09>.safetensors` (mode 0600), `Saved checkpoint to …`, then
  `optimizer.pt` rewritten in place with the same size and `Saved optimizer to …`, then the oldest
  checkpoints beyond max_step_saves_to_keep (by ctime) removed; at the end `<name>.safetensors`;
- `loss_log.db` as ai-toolkit's UI logger writes it (WAL; steps, metric_keys, metrics;
  `learning_rate` and `loss/loss` every log_every steps but never the first step of a run;
  buffered, flushed every 0.25 s);
- re-run with the same config it resumes from the newest checkpoint (training_info.step in its
  metadata) and loads optimizer.pt whenever one exists; SIGINT prints "Job stopped", exit 0.

optimizer.pt is a fixed-size record holding the step it was saved at; on loading it, besides
ai-toolkit's lines, the stand-in prints `stand-in: optimizer state of step K` so a test can tell
which save's state a resume got (ai-toolkit itself does not check that it matches the checkpoint).

Environment (tests only): STAND_IN_STEP_SECONDS (default 0.02: each training step, and each sample
image, takes this long), STAND_IN_CRASH_AT_STEP (at that step the run fails as a Python exception in
ai-toolkit's loop does: `Error running job: stand-in crash requested`, a traceback, exit 1),
STAND_IN_HANG_AFTER_FINISH=1 (after the final LoRA and samples, go silent, ignore SIGINT and never
exit), STAND_IN_CHECKPOINT_BYTES (each checkpoint's tensor data is about this large, for benchmarks
of real-sized uploads; default 16 bytes).
"""
import hashlib
import json
import math
import os
import signal
import sqlite3
import struct
import sys
import time

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
SEPARATOR = "=" * 40
OPTIMIZER_MAGIC = b"stand-in optimizer state\n"
OPTIMIZER_SIZE = 4096


def say(*lines):
    for line in lines:
        print(line, flush=True)


def end_message(completed, failed):
    """run.py's summary, printed only when a job failed or was stopped."""
    say("", SEPARATOR, "Result:", f" - {completed} completed job{'' if completed == 1 else 's'}")
    if failed:
        say(f" - {failed} failure{'' if failed == 1 else 's'}")
    say(SEPARATOR)


def fail(kind, message, path, line, function):
    """What run.py does with an exception out of job.run(): prints it, the summary, re-raises."""
    say(f"Error running job: {message}")
    end_message(0, 1)
    sys.stderr.write(f"Traceback (most recent call last):\n  File \"/app/ai-toolkit/run.py\", line 120, in main\n    job.run()\n"
                     f"  File \"/app/ai-toolkit/{path}\", line {line}, in {function}\n{kind}: {message}\n")
    sys.stderr.flush()
    sys.exit(1)


# --- tqdm, as far as its output goes -------------------------------------------------------------

class EMA:
    """tqdm's bias-corrected exponential moving average."""

    def __init__(self, alpha):
        self.alpha, self.value, self.calls = alpha, 0.0, 0

    def __call__(self, x=None):
        if x is not None:
            self.value = self.alpha * x + (1 - self.alpha) * self.value
            self.calls += 1
        return self.value / (1 - (1 - self.alpha) ** self.calls) if self.calls else self.value


def clock_text(seconds):
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours:d}:{m:02d}:{s:02d}" if hours else f"{m:02d}:{s:02d}"


class Bar:
    """A tqdm bar with default settings (mininterval 0.1 s, dynamic miniters, smoothing, a 10-cell
    bar when stderr is not a terminal), drawing the same text at the same moments tqdm would."""
    UTF = " " + "".join(map(chr, range(0x258F, 0x2587, -1)))
    ASCII = " 123456789#"

    def __init__(self, desc, total, initial=0, smoothing=0.3, stream=sys.stderr, clock=time.time):
        self.desc, self.total, self.initial = desc, total, initial
        self.n = self.last_print_n = initial
        self.postfix = None
        self.mininterval, self.maxinterval, self.miniters = 0.1, 10.0, 0
        self.smoothing = smoothing
        self.ema_dn, self.ema_dt, self.ema_miniters = EMA(smoothing), EMA(smoothing), EMA(smoothing)
        self.overall = False
        self.stream, self.clock = stream, clock
        try:
            "\u2588\u2589".encode(stream.encoding or "ascii")
            self.charset = self.UTF
        except (UnicodeEncodeError, LookupError):
            self.charset = self.ASCII
        try:
            self.ncols = os.get_terminal_size(stream.fileno()).columns - 1
        except (OSError, ValueError, AttributeError):
            self.ncols = None
        self.last_len = 0
        self.start_t = None
        self.refresh()
        self.last_print_t = self.start_t = clock()

    def text(self):
        n, total = self.n, self.total
        elapsed = self.clock() - self.start_t if self.start_t is not None else 0
        rate = None if self.overall or not self.ema_dt() else self.ema_dn() / self.ema_dt()
        if total and n >= total + 0.5:
            total = None
        if rate is None and elapsed:
            rate = (n - self.initial) / elapsed
        inverse = 1 / rate if rate else None
        if inverse and inverse > 1:
            rate_text = f"{inverse:5.2f}s/it"
        else:
            rate_text = (f"{rate:5.2f}" if rate else "?") + "it/s"
        postfix = ", " + self.postfix if self.postfix else ""
        remaining = clock_text((total - n) / rate if total else 0) if rate else "?"
        left = self.desc + ": " if self.desc else ""
        if not total:
            line = f"{left}{n}it [{clock_text(elapsed)}, {rate_text}{postfix}]"
            return line[:self.ncols] if self.ncols else line
        fraction = n / total
        left += f"{fraction * 100:3.0f}%|"
        right = f"| {n}/{total} [{clock_text(elapsed)}<{remaining}, {rate_text}{postfix}]"
        cells = max(1, self.ncols - len(left) - len(right)) if self.ncols else 10
        symbols = len(self.charset) - 1
        full, part = divmod(int(fraction * cells * symbols), symbols)
        bar = self.charset[-1] * full
        if full < cells:
            bar += self.charset[part] + self.charset[0] * (cells - full - 1)
        line = left + bar + right
        return line[:self.ncols] if self.ncols else line

    def refresh(self):
        line = self.text()
        self.stream.write("\r" + line + " " * max(self.last_len - len(line), 0))
        self.stream.flush()
        self.last_len = len(line)

    def set_postfix_str(self, text):
        self.postfix = text
        self.refresh()

    def update(self, count=1):
        self.n += count
        if self.n - self.last_print_n < self.miniters:
            return
        now = self.clock()
        dt = now - self.last_print_t
        if dt < self.mininterval or now < self.start_t:
            return
        dn = self.n - self.last_print_n
        if self.smoothing and dt and dn:
            self.ema_dn(dn)
            self.ema_dt(dt)
        self.refresh()
        if self.maxinterval and dt >= self.maxinterval:
            self.miniters = dn * self.mininterval / dt
        elif self.smoothing:
            self.miniters = self.ema_miniters(dn * (self.mininterval / dt if dt else 1))
        self.last_print_n, self.last_print_t = self.n, now

    def close(self):
        """leave=True: a last draw with the whole run's average rate, then a newline."""
        self.overall = True
        self.refresh()
        self.stream.write("\n")
        self.stream.flush()


class TrainingBar(Bar):
    """ai-toolkit's ToolkitProgressBar: smoothing 0.7; time spent paused (saving, sampling) is
    left out of the elapsed time and the rate, and update() does nothing while paused."""

    def __init__(self, desc, total, initial, **options):
        super().__init__(desc, total, initial, smoothing=0.7, **options)
        self.paused, self.paused_at = False, self.clock()

    def pause(self):
        if not self.paused:
            self.paused, self.paused_at = True, self.clock()

    def unpause(self):
        if self.paused:
            self.paused = False
            now = self.clock()
            self.start_t += now - self.paused_at
            self.last_print_t = now

    def update(self, count=1):
        if not self.paused:
            super().update(count)


# --- files -------------------------------------------------------------------------------------

def jpeg(width, height, comment):
    """A baseline JFIF of a flat mid-grey YCbCr picture: every 8x8 block has DC difference 0 and
    an immediate end-of-block, each coded as the single 1-bit Huffman code `0`."""
    def segment(marker, payload):
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    table = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1 for symbol 0
    data = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    data += segment(0xFE, comment.encode()[:60000])
    data += segment(0xDB, b"\x00" + b"\x01" * 64)
    data += segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00")
    data += segment(0xC4, b"\x00" + table + b"\x10" + table)
    data += segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
    bits = 2 * 3 * math.ceil(width / 8) * math.ceil(height / 8)
    scan = b"\x00" * (bits // 8)
    if bits % 8:
        scan += bytes([(1 << (8 - bits % 8)) - 1])
    return b"\xff\xd8" + data + scan + b"\xff\xd9"


def write_safetensors(path, step, epoch, meta):
    """A valid safetensors file: little-endian header length, JSON header, tensor bytes; written in
    place with mode 0600 like ai-toolkit's."""
    values = max(4, int(os.environ.get("STAND_IN_CHECKPOINT_BYTES", "16")) // 4)
    data = struct.pack("<4f", 0.1, 0.2, 0.3, float(step)) + bytes(4 * (values - 4))
    metadata = {"training_info": json.dumps({"step": step, "epoch": epoch}), "ss_output_name": meta.get("name", ""),
                "software": json.dumps({"name": "stand-in-trainer"})}
    metadata.update({k: str(v) for k, v in meta.items()})
    header = {"diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight": {"dtype": "F32", "shape": [values // 2, 2] if values % 2 == 0 else [values], "data_offsets": [0, len(data)]},
              "__metadata__": metadata}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + data)


def read_training_info(path):
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
    info = json.loads(header["__metadata__"]["training_info"])
    return int(info["step"]), int(info.get("epoch", 0))


def optimizer_record(step):
    """OPTIMIZER_SIZE bytes whatever the step: the magic, the step, then filler that differs per step."""
    record = OPTIMIZER_MAGIC + struct.pack("<Q", step)
    seed = record
    while len(record) < OPTIMIZER_SIZE:
        seed = hashlib.sha256(seed).digest()
        record += seed
    return record[:OPTIMIZER_SIZE]


def read_optimizer_step(path):
    with open(path, "rb") as f:
        record = f.read()
    if len(record) != OPTIMIZER_SIZE or not record.startswith(OPTIMIZER_MAGIC):
        raise ValueError(f"not a stand-in optimizer state ({len(record)} bytes)")
    step = struct.unpack_from("<Q", record, len(OPTIMIZER_MAGIC))[0]
    if record != optimizer_record(step):
        raise ValueError("stand-in optimizer state is damaged")
    return step


class LossLog:
    """loss_log.db as ai-toolkit's UILogger keeps it: values gathered with log(), written per step
    by commit(step) in a buffer flushed every 0.25 s (or 256 values) and at finish(); the first
    commit of a run drops rows of later steps left by an earlier attempt."""

    def __init__(self, path):
        self.path, self.connection = path, None
        self.gathered, self.steps, self.values, self.key_range = {}, [], [], {}
        self.pruned, self.flushed_at = False, time.time()

    def start(self):
        if self.connection is not None:
            return
        self.connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "temp_store=MEMORY", "foreign_keys=ON", "busy_timeout=30000"):
            self.connection.execute(f"PRAGMA {pragma};")
        self.connection.execute("BEGIN;")
        self.connection.execute("CREATE TABLE IF NOT EXISTS steps (step INTEGER PRIMARY KEY, wall_time REAL NOT NULL);")
        self.connection.execute("CREATE TABLE IF NOT EXISTS metric_keys (key TEXT PRIMARY KEY, first_seen_step INTEGER, last_seen_step INTEGER);")
        self.connection.execute("CREATE TABLE IF NOT EXISTS metrics (step INTEGER NOT NULL, key TEXT NOT NULL, value_real REAL, value_text TEXT, "
                                "PRIMARY KEY (step, key), FOREIGN KEY (step) REFERENCES steps(step) ON DELETE CASCADE);")
        self.connection.execute("CREATE INDEX IF NOT EXISTS idx_metrics_key_step ON metrics (key, step);")
        self.connection.execute("COMMIT;")
        self.flushed_at = time.time()

    def log(self, values):
        self.gathered.update(values)

    def commit(self, step):
        self.start()
        if not self.gathered:
            return
        if not self.pruned:
            self.pruned = True
            self.connection.execute("BEGIN;")
            self.connection.execute("DELETE FROM steps WHERE step > ?;", (step,))
            self.connection.execute("DELETE FROM metric_keys WHERE NOT EXISTS (SELECT 1 FROM metrics WHERE metrics.key = metric_keys.key);")
            self.connection.execute("UPDATE metric_keys SET last_seen_step = (SELECT MAX(step) FROM metrics WHERE metrics.key = metric_keys.key) "
                                    "WHERE last_seen_step > ?;", (step,))
            self.connection.execute("COMMIT;")
        self.steps.append((step, time.time()))
        for key, value in self.gathered.items():
            self.values.append((step, key, float(value), None))
            low, high = self.key_range.get(key, (step, step))
            self.key_range[key] = (min(low, step), max(high, step))
        self.gathered = {}
        if len(self.values) >= 256 or time.time() - self.flushed_at >= 0.25:
            self.flush()

    def flush(self):
        if not self.steps and not self.values:
            return
        self.connection.execute("BEGIN;")
        self.connection.executemany("INSERT INTO steps(step, wall_time) VALUES(?, ?) ON CONFLICT(step) DO UPDATE SET wall_time=excluded.wall_time;", self.steps)
        self.connection.executemany("INSERT INTO metric_keys(key, first_seen_step, last_seen_step) VALUES(?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                                    "first_seen_step=MIN(metric_keys.first_seen_step, excluded.first_seen_step), "
                                    "last_seen_step=MAX(metric_keys.last_seen_step, excluded.last_seen_step);",
                                    [(key, low, high) for key, (low, high) in self.key_range.items()])
        self.connection.executemany("INSERT INTO metrics(step, key, value_real, value_text) VALUES(?, ?, ?, ?) ON CONFLICT(step, key) DO UPDATE SET "
                                    "value_real=excluded.value_real, value_text=excluded.value_text;", self.values)
        self.connection.execute("COMMIT;")
        self.steps, self.values, self.key_range = [], [], {}
        self.flushed_at = time.time()

    def finish(self):
        if self.connection is not None:
            self.flush()
            self.connection.close()
            self.connection = None


class NoLog:
    def start(self): pass
    def log(self, values): pass
    def commit(self, step): pass
    def finish(self): pass


# --- the run -----------------------------------------------------------------------------------

def main():
    config_path = sys.argv[-1]
    with open(config_path) as f:
        config = json.load(f)
    name = config["config"]["name"]
    process = config["config"]["process"][0]
    meta = config.get("meta", {})
    say("Running 1 job", "", "#############################################", f"# Running job: {name}",
        "#############################################", "", "", "Running  1 process")
    dataset = process["datasets"][0]
    targets = sorted(n for n in os.listdir(dataset["folder_path"]) if n.lower().endswith(IMAGE_EXTENSIONS))
    train, save, sample = process["train"], process["save"], process.get("sample", {})
    logging = process.get("logging", {})
    steps, save_every, keep = train["steps"], save.get("save_every", 1000), save.get("max_step_saves_to_keep", 5)
    folder = os.path.join(process["training_folder"], name)
    os.makedirs(folder, exist_ok=True)
    optimizer_path = os.path.join(folder, "optimizer.pt")
    sample_ext = sample.get("format", "jpg")
    if sample_ext not in ("jpg", "jpeg") and not train.get("disable_sampling"):
        fail("ValueError", f"stand-in: sample format {sample_ext!r} is not imitated", "toolkit/config_modules.py", 93, "__init__")

    start, epoch = 0, 0
    checkpoints = [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(name) and n.endswith(".safetensors")]
    if checkpoints:
        newest = max(checkpoints, key=os.path.getctime)
        say(f"#### IMPORTANT RESUMING FROM {newest} ####", f"Loading from {newest}")
        start, epoch = read_training_info(newest)
        say(f"Found step {start} in metadata, starting from there")

    if os.path.exists(optimizer_path):
        say(f"Loading optimizer state from {optimizer_path}")
        try:
            say(f"stand-in: optimizer state of step {read_optimizer_step(optimizer_path)}")
        except (OSError, ValueError, struct.error) as error:
            say(f"Failed to load optimizer state from {optimizer_path}", str(error))
        say("Updating optimizer LR from params")

    # The data loader: each sample takes the controls it has, one per control_path folder that holds
    # its name (toolkit/dataloader_mixins.py), so samples may have different counts; one with none
    # fails while caching the text embeddings.
    say(f"  -  Found {len(targets)} images")
    for target in targets:
        stem = os.path.splitext(target)[0]
        found = [control for control in dataset["control_path"] if any(os.path.exists(os.path.join(control, stem + ext)) for ext in IMAGE_EXTENSIONS)]
        if not found:
            fail("ValueError", "Missing control images for QwenImageEditPlusModel",
                     "extensions_built_in/diffusion_models/qwen_image/qwen_image_edit_plus.py", 179, "get_prompt_embeds")

    logger = LossLog(os.path.join(folder, "loss_log.db")) if logging.get("use_ui_logger") else NoLog()
    log_every = logging.get("log_every", 100)
    logger.start()

    stopped = []
    signal.signal(signal.SIGINT, lambda *_: stopped.append(True))
    delay = float(os.environ.get("STAND_IN_STEP_SECONDS", "0.02"))
    crash_at = int(os.environ.get("STAND_IN_CRASH_AT_STEP", "-1"))
    disable_sampling = train.get("disable_sampling", False)
    items = sample.get("samples", [])
    sample_every = sample.get("sample_every", 100)

    def sample_size(item):
        sizes = []
        for key in ("width", "height"):
            value = item.get(key, sample.get(key, 512))
            value = max(64, value - value % 8)  # GenerateImageConfig
            sizes.append(value // 32 * 32)  # the Qwen model's bucket divisibility
        return sizes

    def generate_samples(step):
        samples_folder = os.path.join(folder, "samples")
        staging = os.path.join(samples_folder, ".tmp")
        bar = Bar("Generating Samples", total=len(items))
        for index, item in enumerate(items):
            time.sleep(delay)
            os.makedirs(staging, exist_ok=True)
            file = f"{int(time.time() * 1000)}__{step:09d}_{index}.{sample_ext}"
            width, height = sample_size(item)
            with open(os.path.join(staging, file), "wb") as f:
                f.write(jpeg(width, height, f"stand-in sample of step {step}, prompt {index}"))
            with open(os.path.join(staging, file + ".thumb"), "wb") as f:
                f.write(jpeg(300, 300, f"stand-in thumbnail of step {step}, prompt {index}"))
            os.makedirs(os.path.join(samples_folder, ".thumbs"), exist_ok=True)
            os.replace(os.path.join(staging, file + ".thumb"), os.path.join(samples_folder, ".thumbs", file + ".jpg"))
            os.replace(os.path.join(staging, file), os.path.join(samples_folder, file))
            bar.update(1)
        bar.close()
        say("")

    def save_checkpoint(step=None):
        """BaseSDTrainProcess.save: the checkpoint, optimizer.pt in place, then the clean-up."""
        file = f"{name}_{step:09d}.safetensors" if step is not None else f"{name}.safetensors"
        path = os.path.join(folder, file)
        write_safetensors(path, current_step, epoch, meta)
        say(f"Saved checkpoint to {path}")
        with open(optimizer_path, "wb") as f:
            f.write(optimizer_record(current_step))
        say(f"Saved optimizer to {optimizer_path}")
        saves = sorted((os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(name + "_") and n.endswith(".safetensors")), key=os.path.getctime)
        for old in saves[:-keep] if keep else []:
            say(f"Removing old save: {old}")
            os.remove(old)

    current_step = start
    if train.get("skip_first_sample") or disable_sampling:
        say("Skipping first sample due to config setting")
    elif start <= 1 or train.get("force_first_sample"):
        say("Generating baseline samples before training")
        generate_samples(start)

    bar = TrainingBar(name, steps, start)
    bar.pause()
    batches = max(1, len(targets) * dataset.get("num_repeats", 1) // max(1, train.get("batch_size", 1)))
    fetched = 0
    for step in range(start, steps):
        if stopped:
            say("", SEPARATOR, "Job stopped", SEPARATOR)
            sys.exit(0)
        current_step = step
        bar.unpause()
        if fetched and fetched % batches == 0:
            epoch += 1
        fetched += 1
        if step == crash_at:
            fail("RuntimeError", "stand-in crash requested", "jobs/process/BaseSDTrainProcess.py", 2621, "run")
        time.sleep(delay)
        loss = 0.5 / (1 + step)
        bar.set_postfix_str(f"lr: {train['lr']:.1e} loss: {loss:.3e}")
        if step != start:
            if save_every and step % save_every == 0:
                bar.pause()
                say(f"\nSaving at step {step}")
                save_checkpoint(step)
                bar.unpause()
            if sample_every and step >= sample.get("sample_start_step", 0) and step % sample_every == 0 and not disable_sampling:
                bar.pause()
                generate_samples(step)
                bar.unpause()
            if log_every is None or log_every and step % log_every == 0:
                logger.log({"learning_rate": train["lr"]})
                logger.log({"loss/loss": loss})
        logger.commit(step)
        bar.update(step + 1 - bar.n)
    current_step = steps
    bar.close()
    save_checkpoint()
    if not disable_sampling:
        generate_samples(steps)
        logger.commit(steps)
    say("")
    logger.finish()
    if os.environ.get("STAND_IN_HANG_AFTER_FINISH") == "1":
        # What a trainer stuck in its teardown looks like: silent, deaf to SIGINT, never exiting.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            time.sleep(60)


if __name__ == "__main__":
    main()
