#!/usr/bin/env python3
"""Builds a tiny random-weight Qwen2.5-VL-Instruct in transformers' folder layout, offline.

Usage: tiny_qwen25vl.py OUT_DIR   (run with scripts/ai-toolkit-env's python)

For the captioner's tests (Sources/TrainerWorker/Captioner/caption.py): the real
Qwen/Qwen2.5-VL-7B-Instruct is ~16 GB; this has the same architecture and file layout (config.json,
generation_config.json, model.safetensors, tokenizer, image and video processor, chat template), so
Qwen2_5_VLForConditionalGeneration / AutoProcessor.from_pretrained and apply_chat_template take the
code paths they take on the real one, in about a second on CPU (about 1 MB).

The model is the text encoder of tiny_qwen_image_edit.py (Qwen-Image-Edit's text encoder is a
Qwen2.5-VL), with its tokenizer and image processor, so both tiny models share one set of sizes,
vocabulary and seed. Same discipline as there: OUT_DIR stamped with BUILDER_VERSION is left alone,
a build happens beside OUT_DIR and is renamed into place. Prints OUT_DIR.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_qwen_image_edit as tq  # noqa: E402  (also sets HF_HUB_OFFLINE)

BUILDER_VERSION = "1"
STAMP = ".tiny-qwen25vl-builder"

# Qwen2-VL's chat template (the one Qwen2.5-VL-Instruct ships): a default system message, and
# <|vision_start|><|image_pad|><|vision_end|> for each image, which the processor then expands to
# the image's patch tokens.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# What the random model may say: lower-case letters (token id = byte value in this vocabulary).
ALLOWED_TOKENS = range(ord("a"), ord("z") + 1)


def build(out_dir):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    with tempfile.TemporaryDirectory(dir=out_dir) as edit_model:
        tq.build(edit_model)  # seeded: the same weights every time
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(os.path.join(edit_model, "text_encoder"))
        loaded = AutoProcessor.from_pretrained(os.path.join(edit_model, "processor"))
    # At their init scale (std 0.02) random weights make a nearly input-blind model: the last tokens
    # decide, and different items get the same answer. Ten times larger, the answer depends on the
    # images and the prompt, so tests can tell the answers of different items apart.
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if weight.dim() == 2 and "embed" not in name:
                weight.mul_(10)
    # Qwen2.5-VL-Instruct's processor class (Qwen-Image-Edit stores Qwen2-VL's), same parts.
    processor = Qwen2_5_VLProcessor(image_processor=loaded.image_processor, tokenizer=loaded.tokenizer,
                                    video_processor=loaded.video_processor, chat_template=CHAT_TEMPLATE)
    processor.tokenizer.chat_template = CHAT_TEMPLATE

    # Random weights often put EOS or a stray byte (control characters, half a UTF-8 sequence) first,
    # and Qwen2's lm_head has no bias to shift. Suppressing every other token in the generation
    # config makes greedy decoding print max_new_tokens lower-case letters, deterministically; it
    # is read by generate() itself, so the captioner runs unchanged.
    config = model.generation_config
    config._from_model_config = False  # not derived from config.json: older transformers rebuilt those, dropping these
    config.suppress_tokens = [i for i in range(model.config.text_config.vocab_size) if i not in ALLOWED_TOKENS]
    config.eos_token_id = tq.FIRST_SPECIAL + tq.SPECIAL_TOKENS.index("<|im_end|>")
    config.pad_token_id = tq.FIRST_SPECIAL + tq.SPECIAL_TOKENS.index("<|endoftext|>")

    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)


def main():
    tq.build_once(sys.argv, build, STAMP, BUILDER_VERSION)


if __name__ == "__main__":
    main()
