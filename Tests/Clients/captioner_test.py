"""The captioner (Sources/TrainerWorker/Captioner/caption.py) run as the worker runs it, on a tiny
random-weight Qwen2.5-VL (Tests/Fixtures/tiny_qwen25vl.py), offline (HF_HUB_OFFLINE=1), on CPU
(on the GPU where there is one).

Usage:
    "$(AI_TOOLKIT_DIR=$(scripts/ai-toolkit-source) scripts/ai-toolkit-env)/python" Tests/Clients/captioner_test.py
Run with the trainer's venv python: the captioner runs with the same one (torch, transformers,
Pillow), and the tiny model's builder needs diffusers too. The model is built once into
.build-aitk/tiny-qwen25vl (or TINY_QWEN25VL_DIR) and kept.

Checks: the "loaded" line comes first and each line as soon as it is ready; one line per item, in
request order; only the new tokens, max_new_tokens of them, decoded; the same answer for the same
item (greedy), another for other images; an item whose image is missing or not an image gets an
"error" line and the rest go on; exit 0 then; exit 2 with nothing run for bad usage or a malformed
request; exit 1 with a clear message for a model folder that does not exist or holds no model;
stdout holds only JSON lines.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from PIL import Image

from support import check, png

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPTION = os.path.join(ROOT, "Sources", "TrainerWorker", "Captioner", "caption.py")
BUILDER = os.path.join(ROOT, "Tests", "Fixtures", "tiny_qwen25vl.py")
MODEL_DIR = os.environ.get("TINY_QWEN25VL_DIR") or os.path.join(ROOT, ".build-aitk", "tiny-qwen25vl")
ENV = dict(os.environ, HF_HUB_OFFLINE="1")
MAX_NEW_TOKENS = 12
# Upper case and punctuation: the tiny model only says lower-case letters, so none of this in an
# answer means only the new tokens were decoded.
PROMPT = "Picture 1 is before, picture 2 is AFTER. Write the EDIT INSTRUCTION."


def caption(work, request, model=MODEL_DIR):
    """caption.py on `request` (a dict, or raw text for the file); returns (exit code, stdout lines, stderr)."""
    path = os.path.join(work, "request.json")
    with open(path, "w") as f:
        f.write(request if isinstance(request, str) else json.dumps(request))
    result = subprocess.run([sys.executable, CAPTION, "--model", model, "--request", path],
                            env=ENV, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout.splitlines(), result.stderr


def write_images(work):
    folders = {name: os.path.join(work, "pairs", name) for name in ("control_1", "control_2", "target")}
    for folder in folders.values():
        os.makedirs(folder)
    paths = {
        "cat": [os.path.join(folders["control_1"], "cat.png"), os.path.join(folders["control_2"], "cat.jpg"),
                os.path.join(folders["target"], "cat.png")],
        "dog": [os.path.join(folders["control_1"], "dog.webp"), os.path.join(folders["target"], "dog.png")],
    }
    # Sizes above and below the processor's limits (it resizes, the captioner does not).
    Image.new("RGB", (640, 480), (40, 90, 160)).save(paths["cat"][0])
    Image.new("RGB", (96, 96), (250, 220, 30)).save(paths["cat"][1])
    Image.new("RGB", (512, 512), (200, 30, 30)).save(paths["cat"][2])
    Image.new("RGB", (300, 200), (10, 120, 60)).save(paths["dog"][0])
    Image.new("RGB", (200, 300), (90, 10, 200)).save(paths["dog"][1])
    # A PNG header with nothing decodable behind it, and a text file named like an image.
    paths["broken"] = [os.path.join(folders["control_1"], "broken.png"), paths["dog"][1]]
    open(paths["broken"][0], "wb").write(png(64, 64))
    paths["text"] = [paths["cat"][0], os.path.join(folders["target"], "text.png")]
    open(paths["text"][1], "w").write("a caption, not an image\n")
    paths["missing"] = [os.path.join(folders["control_1"], "missing.png"), paths["dog"][1]]
    return paths


def check_good_run(work, paths):
    """The main request, read line by line while caption.py runs, as the worker reads it."""
    ids = ["cat", "missing", "dog", "broken", "text", "cat-again"]
    request = {"system": "You write image edit instructions.", "max_new_tokens": MAX_NEW_TOKENS,
               "items": [{"id": i, "images": paths[i.replace("-again", "")], "prompt": PROMPT} for i in ids]}
    path = os.path.join(work, "good.json")
    with open(path, "w") as f:
        json.dump(request, f)
    started = time.time()
    with open(os.path.join(work, "good.stderr"), "w+") as stderr:
        process = subprocess.Popen([sys.executable, CAPTION, "--model", MODEL_DIR, "--request", path],
                                   env=ENV, stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines, running = [], []
        for line in process.stdout:
            # Still running when a line arrives: it was flushed then, not at exit.
            running.append(process.poll() is None)
            lines.append(line)
        code = process.wait(timeout=600)
        stderr.seek(0)
        log = stderr.read()
    print(f"  (captioned {len(ids)} items in {time.time() - started:.1f} s)")
    check(code == 0, "caption.py exits 0 for a request with some bad items" + (f" (got {code}; stderr: {log[-2000:]})" if code else ""))
    try:
        replies = [json.loads(line) for line in lines]
    except ValueError:
        raise AssertionError(f"stdout holds something else than JSON lines: {lines}")
    check(all(line.endswith("\n") and "\n" not in line[:-1] for line in lines), "stdout holds one JSON object a line, nothing else")
    check(len(replies) == 1 + len(ids), "one 'loaded' line and one line per item" + (f" (got {replies})" if len(replies) != 1 + len(ids) else ""))
    loaded = replies[0]
    check(loaded.get("event") == "loaded" and loaded.get("model") == MODEL_DIR and loaded.get("device") in ("cpu", "cuda"),
          f"the first line says the model is loaded, and where: {loaded}")
    check(running[0] and running[1], "the 'loaded' line and the first answer arrive while caption.py still runs (flushed at once)")
    items = replies[1:]
    check([r.get("id") for r in items] == ids, f"the lines follow the request's order: {[r.get('id') for r in items]}")
    answers = {r["id"]: r for r in items}
    for good in ("cat", "dog", "cat-again"):
        reply = answers[good]
        check(set(reply) == {"id", "text"} and isinstance(reply["text"], str) and reply["text"].strip(),
              f"{good}: a non-empty text, no error: {reply}")
        # One letter a token: exactly the new tokens, no prompt, no special tokens.
        check(re.fullmatch(r"[a-z]{%d}" % MAX_NEW_TOKENS, reply["text"]) is not None,
              f"{good}: only the {MAX_NEW_TOKENS} new tokens are decoded: {reply['text']!r}")
    check(answers["cat-again"]["text"] == answers["cat"]["text"], "the same item gets the same answer (greedy decoding)")
    check(answers["dog"]["text"] != answers["cat"]["text"], "other images, another answer (the model sees them)")
    for bad, image in (("missing", paths["missing"][0]), ("broken", paths["broken"][0]), ("text", paths["text"][1])):
        reply = answers[bad]
        check(set(reply) == {"id", "error"} and image in reply["error"], f"{bad}: an error line naming the image: {reply}")
    check("not found" in answers["missing"]["error"], f"a missing image is said to be missing: {answers['missing']['error']}")


def check_bad_requests(work, paths):
    good_item = {"id": "cat", "images": paths["cat"], "prompt": PROMPT}
    cases = [
        ("a request that is not JSON", "{not json", "not JSON"),
        ("a request that is not an object", "[]", "JSON object"),
        ("a request without items", {"system": "s"}, "'items'"),
        ("an item without images", {"items": [{"id": "cat", "prompt": PROMPT}]}, "items[0].images"),
        ("an item with an empty image list", {"items": [{"id": "cat", "images": [], "prompt": PROMPT}]}, "items[0].images"),
        ("an item without a prompt", {"items": [{"id": "cat", "images": paths["cat"]}]}, "items[0].prompt"),
        ("an item without an id", {"items": [{"images": paths["cat"], "prompt": PROMPT}]}, "items[0].id"),
        ("two items with one id", {"items": [good_item, good_item]}, "used twice"),
        ("max_new_tokens that is not a count", {"max_new_tokens": "96", "items": [good_item]}, "max_new_tokens"),
        ("a system prompt that is not text", {"system": ["s"], "items": [good_item]}, "'system'"),
    ]
    for what, request, said in cases:
        code, lines, log = caption(work, request)
        check(code == 2 and not lines and said in log, f"{what}: exit 2, nothing on stdout, stderr says {said!r} (got {code}: {log.strip()[-300:]})")
    result = subprocess.run([sys.executable, CAPTION, "--model", MODEL_DIR, "--request", os.path.join(work, "nowhere.json")],
                            env=ENV, capture_output=True, text=True, timeout=60)
    check(result.returncode == 2 and not result.stdout and "cannot read the request file" in result.stderr,
          f"a request file that does not exist: exit 2 ({result.returncode}: {result.stderr.strip()[-300:]})")
    result = subprocess.run([sys.executable, CAPTION, "--model", MODEL_DIR], env=ENV, capture_output=True, text=True, timeout=60)
    check(result.returncode == 2 and not result.stdout and "--request" in result.stderr,
          f"no --request: exit 2 with the usage ({result.returncode}: {result.stderr.strip()[-300:]})")


def check_bad_models(work, paths):
    request = {"items": [{"id": "cat", "images": paths["cat"], "prompt": PROMPT}]}
    missing = os.path.join(work, "no-such-model")
    code, lines, log = caption(work, request, model=missing)
    check(code == 1 and not lines and f"model folder {missing} does not exist" in log and "config.json" in log,
          f"a model folder that does not exist: exit 1, stderr says so and what a model folder holds (got {code}: {log.strip()[-400:]})")
    empty = os.path.join(work, "empty-model")
    os.makedirs(empty)
    code, lines, log = caption(work, request, model=empty)
    check(code == 1 and not lines and f"cannot load the model {empty}" in log and "config.json" in log,
          f"a folder without a model: exit 1, stderr says why and what to do (got {code}: {log.strip()[-400:]})")


def main():
    started = time.time()
    subprocess.run([sys.executable, BUILDER, MODEL_DIR], env=ENV, check=True, stdout=subprocess.DEVNULL)
    print(f"  (tiny Qwen2.5-VL ready in {time.time() - started:.1f} s)")
    with tempfile.TemporaryDirectory() as work:
        paths = write_images(work)
        check_good_run(work, paths)
        check_bad_requests(work, paths)
        check_bad_models(work, paths)
    print(f"captioner_test: all checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
