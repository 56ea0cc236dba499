#!/usr/bin/env python3
"""Checks that a LoRA written by ai-toolkit loads in diffusers and changes what the model renders.

Usage: lora_check.py MODEL_DIR LORA_FILE CONTROL_IMAGE   (run with scripts/ai-toolkit-env's python)

Loads QwenImageEditPlusPipeline from MODEL_DIR on CPU, renders 64x64 (2 steps, fixed seed) from
CONTROL_IMAGE without and then with the LoRA, and exits 0 only if
- every LoRA module in the file was injected into the transformer under our adapter name and holds
  the file's weights (diffusers only warns about keys it cannot place, and an adapter whose keys
  all miss would render exactly like the base model), and
- the output changed.
Prints the max absolute pixel difference (0-255 scale). Exits 1 with a message otherwise.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from diffusers import QwenImageEditPlusPipeline
from PIL import Image
from safetensors.torch import load_file

ADAPTER = "under_test"
PREFIX = "diffusion_model."  # ai-toolkit's key prefix for the transformer's modules


def fail(msg):
    print(f"lora_check: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def render(pipe, control):
    out = pipe(image=[control], prompt="make it look like a watercolour", height=64, width=64,
               num_inference_steps=2, true_cfg_scale=1.0, generator=torch.Generator("cpu").manual_seed(7), output_type="np")
    return np.asarray(out.images[0], dtype=np.float64) * 255.0


def check_loaded(pipe, lora_file):
    """Every lora_A/lora_B tensor of the file is in a transformer module under ADAPTER, equal."""
    state = load_file(lora_file)
    modules = dict(pipe.transformer.named_modules())
    checked = 0
    for key, tensor in state.items():
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if not key.endswith(suffix):
                continue
            name = key[: -len(suffix)]
            name = name[len(PREFIX):] if name.startswith(PREFIX) else name
            module = modules.get(name)
            layers = getattr(module, part, None)
            if layers is None or ADAPTER not in layers:
                fail(f"{key}: no {part}[{ADAPTER!r}] on transformer module {name!r} (key not applied)")
            loaded = layers[ADAPTER].weight.detach().float()
            if loaded.shape != tensor.shape or not torch.allclose(loaded, tensor.float(), atol=1e-3, rtol=1e-3):
                fail(f"{key}: the transformer's weights differ from the file's")
            checked += 1
    if checked == 0:
        fail(f"{lora_file} holds no lora_A/lora_B weights (keys: {sorted(state)[:5]}...)")
    return checked


def main():
    if len(sys.argv) != 4:
        print("usage: lora_check.py MODEL_DIR LORA_FILE CONTROL_IMAGE", file=sys.stderr)
        sys.exit(2)
    model_dir, lora_file, control_path = sys.argv[1:]
    torch.manual_seed(0)
    pipe = QwenImageEditPlusPipeline.from_pretrained(model_dir, torch_dtype=torch.float32).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    control = Image.open(control_path).convert("RGB")

    before = render(pipe, control)
    try:
        # Folder + weight_name: with HF_HUB_OFFLINE=1 diffusers refuses a bare file path.
        pipe.load_lora_weights(os.path.dirname(os.path.abspath(lora_file)),
                               weight_name=os.path.basename(lora_file), adapter_name=ADAPTER)
    except Exception as e:  # noqa: BLE001 - any load error is the answer
        fail(f"load_lora_weights({lora_file}) raised {type(e).__name__}: {e}")
    adapters = pipe.get_list_adapters()
    if ADAPTER not in adapters.get("transformer", []):
        fail(f"adapter {ADAPTER!r} not registered on the transformer (adapters: {adapters})")
    tensors = check_loaded(pipe, lora_file)
    after = render(pipe, control)

    diff = float(np.abs(after - before).max())
    print(f"lora tensors applied: {tensors}")
    print(f"max abs pixel difference: {diff:.6f}")
    if not diff > 0.0:
        fail("the LoRA loaded but the output did not change")
    print("lora_check: OK")


if __name__ == "__main__":
    main()
