#!/usr/bin/env bash
# The README's A100 run (TeenyTinyLlama-160M, wikitext-2-raw-v1, 3 epochs, batch 64, alpha-merge every 500
# updates at alpha 0.1, HF Trainer, bf16 autocast), now with the merge actually executed and only adapters trained.
#   bash scripts/run_on_a100.sh [extra --key value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
export TOKENIZERS_PARALLELISM=false
export WANDB_MODE="${WANDB_MODE:-disabled}"
if [ ! -x .venv/bin/python ]; then
    make setup TORCH_SPEC=torch   # CUDA build of torch from PyPI on a GPU machine
fi
mkdir -p results
.venv/bin/python scripts/train_superrelora.py --config training_configs/superrelora_160m.yaml --use_trainer \
    --merge_every 500 --merge_alpha 0.1 --batch_size 64 --num_epochs 3 --max_length 64 \
    --gradient_accumulation_steps 1 --logging_steps 20 --eval_steps 0 --save_steps 500 \
    --fp16 false --bf16 true --device cuda --output_dir results/a100 --legacy_eval "$@" 2>&1 | tee results/train.log
