#!/bin/bash
# SLURM: hierarchical BD3-LM on GSM8K (the README's Step 3). Batch arithmetic is consistent:
#   GLOBAL_BATCH = BATCH_SIZE (per device) x GPUS x GRAD_ACCUM. GPUS > 1 launches one process per GPU with
#   torchrun (DDP, NCCL): the global batch is split across ranks, gradients all-reduced, rank 0 logs and saves.
#   Defaults 32 x 1 x 2 = 64 (the fork's "global 64"); GPUS=4 BATCH_SIZE=16 GRAD_ACCUM=1 also gives 64.
#   50000 steps x 64 / 7473 examples = ~428 epochs (the fork's "~6.7 epochs" counted steps, not examples).
#   sbatch scripts/train/train_gsm8k_hierarchical.sh                       # 1 GPU
#   GPUS=4 sbatch --gres=gpu:4 scripts/train/train_gsm8k_hierarchical.sh   # 1 node x 4 GPUs
# Knobs (README troubleshooting): LR=1e-4 WARMUP_STEPS=10000 BATCH_SIZE=16 MODEL_SIZE=tiny TOTAL_LEN=384
#SBATCH --job-name=gsm8k_hier_bd3lm
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/gsm8k_hier_%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
QUESTION_LEN=${QUESTION_LEN:-128}
PLAN_LEN=${PLAN_LEN:-128}
TOTAL_LEN=${TOTAL_LEN:-512}
EXEC_LEN=${EXEC_LEN:-$((TOTAL_LEN - QUESTION_LEN - PLAN_LEN))}
BLOCK_SIZE=${BLOCK_SIZE:-16}
MAX_STEPS=${MAX_STEPS:-50000}
WARMUP_STEPS=${WARMUP_STEPS:-5000}
BATCH_SIZE=${BATCH_SIZE:-32}
GRAD_ACCUM=${GRAD_ACCUM:-2}
GPUS=${GPUS:-${SLURM_GPUS_ON_NODE:-1}}
echo "global batch = ${BATCH_SIZE} x ${GPUS} x ${GRAD_ACCUM} = $((BATCH_SIZE * GPUS * GRAD_ACCUM))"
LR=${LR:-3e-4}
MODEL_SIZE=${MODEL_SIZE:-small}
EVAL_EVERY=${EVAL_EVERY:-1000}
TRAIN_PATH=${TRAIN_PATH:-data/gsm8k/gsm8k_hierarchical_train.json}
TEST_PATH=${TEST_PATH:-data/gsm8k/gsm8k_hierarchical_test.json}
OUT=${OUT:-outputs/gsm8k_hierarchical_bd3lm_bs${BLOCK_SIZE}}
PY=${PYTHON:-.venv/bin/python}
mkdir -p logs
if [ "$GPUS" -gt 1 ]; then
  LAUNCH=("$(dirname "$PY")/torchrun" --standalone --nproc_per_node "$GPUS")
else
  LAUNCH=("$PY")
fi
"${LAUNCH[@]}" main.py mode=train model="$MODEL_SIZE" algo=bd3lm block_size="$BLOCK_SIZE" \
  training.hierarchical.enabled=true training.hierarchical.question_len="$QUESTION_LEN" \
  training.hierarchical.plan_len="$PLAN_LEN" training.hierarchical.exec_len="$EXEC_LEN" \
  training.hierarchical.total_len="$TOTAL_LEN" training.max_steps="$MAX_STEPS" \
  lr_scheduler.num_warmup_steps="$WARMUP_STEPS" loader.batch_size="$BATCH_SIZE" \
  trainer.accumulate_grad_batches="$GRAD_ACCUM" training.learning_rate="$LR" training.ema=0.9999 \
  loader.eval_batch_size=8 trainer.val_check_interval="$EVAL_EVERY" trainer.log_every_n_steps=100 \
  noise.type=loglinear data.train_path="$TRAIN_PATH" data.test_path="$TEST_PATH" \
  checkpointing.save_dir="$OUT" "$@"
