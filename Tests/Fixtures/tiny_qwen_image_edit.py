#!/usr/bin/env python3
"""Builds a tiny random-weight Qwen-Image-Edit-2509 in diffusers' folder layout, offline.

Usage: tiny_qwen_image_edit.py OUT_DIR   (run with scripts/ai-toolkit-env's python)

The real model is ~58 GB; the real-trainer tests only need the same architecture (so that
ai-toolkit's `qwen_image_edit_plus` loader and diffusers' QwenImageEditPlusPipeline take the code
paths they take on the real one) with sizes that train on CPU in seconds. Writes transformer/,
text_encoder/, tokenizer/, processor/, vae/, scheduler/ and model_index.json (about 5.5 MB).
Weights come from a fixed seed. If OUT_DIR already holds a model stamped with this builder's
version it is left alone (bump BUILDER_VERSION when anything below changes). Prints OUT_DIR.
"""
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the hub

BUILDER_VERSION = "2"
STAMP = ".tiny-qwen-image-edit-builder"
SEED = 20250922

# Qwen2's special tokens in Qwen's order. The real ids start at 151643; here they follow the 256
# byte-level symbols, so <|vision_start|> is 265 and <|image_pad|> is 268 (the text encoder's
# config below must agree).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
FIRST_SPECIAL = 256
VOCAB_SIZE = 272  # 256 bytes + 14 special tokens, rounded up to a multiple of 8


def byte_symbols():
    """GPT-2's byte-to-unicode table (what byte-level BPE tokenizers use as their base symbols)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def build_tokenizer():
    from transformers import Qwen2Tokenizer

    # Byte-level vocabulary without merges: every byte is one token, enough to encode any prompt.
    # The special tokens are in the vocabulary too, so that they keep the ids above.
    vocab = {s: i for i, s in enumerate(byte_symbols())}
    vocab.update({t: FIRST_SPECIAL + i for i, t in enumerate(SPECIAL_TOKENS)})
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")]})
    ids = tok.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert ids == list(range(FIRST_SPECIAL, FIRST_SPECIAL + len(SPECIAL_TOKENS))), ids
    return tok


def build(out_dir):
    # Imported here, not at the top, so that the up-to-date check in main() stays instant.
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    # The real processor works at up to 1280*28*28 px; 112x112 keeps the vision tower's sequence
    # at 16 patches (4 image tokens after the 2x2 merge).
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=112 * 112)  # required, unused
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor)

    tok_id = tokenizer.convert_tokens_to_ids
    te_config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            bos_token_id=tok_id("<|endoftext|>"), eos_token_id=tok_id("<|im_end|>"),
            pad_token_id=tok_id("<|endoftext|>"),
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            fullatt_block_indexes=[1],
        ),
        image_token_id=tok_id("<|image_pad|>"), video_token_id=tok_id("<|video_pad|>"),
        vision_start_token_id=tok_id("<|vision_start|>"), vision_end_token_id=tok_id("<|vision_end|>"),
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(te_config).eval()

    # head dim 32 = sum(axes_dims_rope); in_channels = 4 * the VAE's z_dim (2x2 latent patches).
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=32,
        num_attention_heads=2, joint_attention_dim=64, axes_dims_rope=(8, 12, 12),
    )
    # 830k parameters (the defaults with base_dim 16 have 3.6M and make every step slower).
    vae = AutoencoderKLQwenImage(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1)
    # Qwen-Image-Edit-2509's scheduler config.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential",
    )

    pipe = QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                     tokenizer=tokenizer, processor=processor, transformer=transformer)
    pipe.save_pretrained(out_dir, safe_serialization=True)


def build_once(argv, build, stamp_name, version):
    """The builders' command line: `SCRIPT OUT_DIR`. An OUT_DIR stamped with `version` is left alone;
    otherwise `build(folder)` runs beside OUT_DIR and its folder is renamed into place, so a killed
    build never looks complete. Prints OUT_DIR."""
    if len(argv) != 2:
        sys.exit(f"usage: {os.path.basename(argv[0])} OUT_DIR")
    out_dir = os.path.abspath(argv[1])
    stamp = os.path.join(out_dir, stamp_name)
    if os.path.isfile(stamp) and open(stamp).read().strip() == version:
        print(out_dir)
        return
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=parent)
    try:
        build(work)
        with open(os.path.join(work, stamp_name), "w") as f:
            f.write(version + "\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.rename(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print(out_dir)


def main():
    build_once(sys.argv, build, STAMP, BUILDER_VERSION)


if __name__ == "__main__":
    main()
