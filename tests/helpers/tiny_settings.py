"""The tiny foundation and auto-encoder the tests and the benches that mirror them train.

Small enough to pre-train in a few seconds on 2 cores, still a real ViT-MAE pre-training run and
a real CRoPD auto-encoder: tests/conftest.py's fixtures, bench/chaos.py and
bench/bench_slurm_requeue.py all use these, so a bench measures what the tests run.
"""

from __future__ import annotations

TINY_EMBEDDED = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "decoder_hidden_size": 32,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 64,
    "epochs": 2,
}
TINY_FOUNDATION = {"name": "embedded", "embedded": TINY_EMBEDDED}
TINY_ARCH = {
    "patch_size": 8,
    "hidden_size": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "num_heads": 2,
    "decoder_hidden_size": 32,
    "mlp_ratio": 2,
    "pool_factor": 8,
    "projector_hidden": 64,
    "projector_dim": 16,
}

# A tiny hub-style ViT-MAE (transformers' ViTMAEConfig arguments) that tests save with
# save_pretrained and load by path: 16 patches of 8 px, mask ratio 0.75 as facebook's checkpoints save it.
TINY_MAE = dict(
    image_size=32,
    patch_size=8,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=64,
    mask_ratio=0.75,
)
