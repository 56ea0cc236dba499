#!/usr/bin/env python3
"""Drafts edit instructions for training pairs with Qwen2.5-VL (run by the worker, on its GPU).

Usage: caption.py [--model MODEL] --request REQUEST_JSON

MODEL: a Hugging Face repo id (default Qwen/Qwen2.5-VL-7B-Instruct) or a local folder in
transformers' layout (config.json, weights, tokenizer and processor files with the chat template).
REQUEST_JSON: {"system": "…" (optional), "max_new_tokens": 96 (optional),
               "items": [{"id": "cat", "images": ["/abs/control_1/cat.png", "/abs/target/cat.png"],
                          "prompt": "…"}]}
The caller writes the prompts and reads the replies; this only runs the model, greedily.

stdout, one JSON object a line, each flushed at once:
  {"event": "loaded", "model": MODEL, "device": "cuda"|"cpu"}   then, per item, in request order,
  {"id": "cat", "text": "…"}   or   {"id": "cat", "error": "…"}   (that item failed; the rest go on)
Everything else (library logs, progress, diagnostics) goes to stderr.
Exit status: 0 request processed (even with item errors); 2 bad usage or request (nothing run);
1 the model could not be loaded (stderr says why and what to do).
"""
import argparse
import json
import os
import re
import sys
import time

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_MAX_NEW_TOKENS = 96


def log(message):
    print(f"caption.py: {message}", file=sys.stderr, flush=True)


class BadRequest(Exception):
    pass


class ImageError(Exception):
    pass


def read_request(path):
    """The request, checked completely before the (slow) model load, so a bad one costs nothing."""
    try:
        with open(path, encoding="utf-8") as f:
            request = json.load(f)
    except OSError as error:
        raise BadRequest(f"cannot read the request file: {error}")
    except ValueError as error:
        raise BadRequest(f"the request file is not JSON: {error}")
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object")
    system = request.get("system")
    if system is not None and not isinstance(system, str):
        raise BadRequest("'system' must be a string")
    max_new_tokens = request.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    # bool is an int in Python; true is not a token count.
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or not 1 <= max_new_tokens <= 4096:
        raise BadRequest("'max_new_tokens' must be an integer from 1 to 4096")
    items = request.get("items")
    if not isinstance(items, list):
        raise BadRequest("'items' must be a list")
    seen = set()
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise BadRequest(f"{where}.id must be a non-empty string")
        if item_id in seen:
            raise BadRequest(f"{where}.id {item_id!r} is used twice; the reply lines are told apart by id")
        seen.add(item_id)
        images = item.get("images")
        if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
            raise BadRequest(f"{where}.images must be a non-empty list of file paths")
        if not isinstance(item.get("prompt"), str):
            raise BadRequest(f"{where}.prompt must be a string")
    return system, max_new_tokens, items


def missing_local_folder(model):
    """A message when MODEL names a local folder that is not there (a repo id is 'owner/name')."""
    if os.path.exists(model):
        return None if os.path.isdir(model) else f"{model} is a file, not a model folder"
    if model.startswith(("/", "./", "../", "~")) or not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return f"model folder {model} does not exist"
    return None


def load(model_name):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_name, dtype=dtype, device_map=device).eval()
    processor = AutoProcessor.from_pretrained(model_name)
    if not getattr(processor, "chat_template", None):
        raise RuntimeError("its processor has no chat template (chat_template.jinja or chat_template.json)")
    return torch, model, processor, device


def open_image(path):
    from PIL import Image, ImageOps

    if not os.path.isfile(path):
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            # Upright as the user sees it (and as ai-toolkit's loader trains on it).
            return ImageOps.exif_transpose(image).convert("RGB")
    except Exception as error:
        raise ImageError(f"cannot read image {path}: {error}")


def caption(torch, model, processor, device, system, max_new_tokens, item):
    images = [open_image(path) for path in item["images"]]
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    content = [{"type": "image", "image": image} for image in images]
    content.append({"type": "text", "text": item["prompt"]})
    messages.append({"role": "user", "content": content})
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images, return_tensors="pt").to(device)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)[0], inputs["input_ids"].shape[1], new_tokens.shape[1]


def main():
    parser = argparse.ArgumentParser(description="Drafts edit instructions for training pairs with Qwen2.5-VL.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"Hugging Face repo id or local folder (default {DEFAULT_MODEL})")
    parser.add_argument("--request", required=True, help="the request JSON file")
    args = parser.parse_args()  # exits 2 on bad usage

    # Only our JSON lines may reach stdout: whatever else writes to it (a library's print, native
    # code writing to fd 1) goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(line):
        out.write(json.dumps(line) + "\n")
        out.flush()

    try:
        system, max_new_tokens, items = read_request(args.request)
    except BadRequest as error:
        log(f"bad request {args.request}: {error}")
        return 2

    problem = missing_local_folder(args.model)
    if problem:
        log(f"cannot load the model: {problem}. Pass --model a folder holding config.json, the weights, "
            f"the tokenizer and the processor files (with the chat template), or a Hugging Face repo id "
            f"such as {DEFAULT_MODEL}.")
        return 1
    started = time.monotonic()
    try:
        torch, model, processor, device = load(args.model)
    except Exception as error:
        log(f"cannot load the model {args.model}: {type(error).__name__}: {error}. "
            f"For a repo id, the worker needs network access to Hugging Face (HF_HUB_OFFLINE unset, HF_TOKEN "
            f"for gated repos) or the model already in its cache (HF_HOME); for a folder, it must hold "
            f"config.json, the weights, the tokenizer and the processor files with the chat template. "
            f"A GPU needs about 17 GB of memory for the 7B model in bfloat16.")
        return 1
    log(f"loaded {args.model} on {device} in {time.monotonic() - started:.1f} s")
    emit({"event": "loaded", "model": args.model, "device": device})

    for item in items:
        started = time.monotonic()
        try:
            text, prompt_tokens, new_tokens = caption(torch, model, processor, device, system, max_new_tokens, item)
        except Exception as error:
            if device == "cuda":
                torch.cuda.empty_cache()  # after an out-of-memory, give the next item its chance
            message = str(error) if isinstance(error, ImageError) else f"{type(error).__name__}: {error}"
            log(f"{item['id']}: failed: {message}")
            emit({"id": item["id"], "error": message})
            continue
        log(f"{item['id']}: {prompt_tokens} prompt tokens, {new_tokens} new, {time.monotonic() - started:.1f} s")
        emit({"id": item["id"], "text": text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
