#!/bin/bash
# SLURM: plans for the GSM8K train and test sets with vLLM on one H200 (the README's Step 1).
#   sbatch scripts/data_prep/run_gsm8k_plan_generation.sh
# CPU / offline: BACKEND=hf MODEL=smollm2-135m DATA_PATH=../../shared/data/gsm8k NUM_EXAMPLES=50 bash <this file>
#SBATCH --job-name=gsm8k_plans
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=02:00:00
#SBATCH --output=logs/gsm8k_plans_%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
MODEL=${MODEL:-meta-llama/Meta-Llama-3-8B-Instruct}
BACKEND=${BACKEND:-auto}
TEMPERATURE=${TEMPERATURE:-0.7}
TOP_P=${TOP_P:-0.9}
MAX_TOKENS=${MAX_TOKENS:-256}
BATCH_SIZE=${BATCH_SIZE:-256}
TP=${TENSOR_PARALLEL_SIZE:-1}
OUT_DIR=${OUT_DIR:-data/gsm8k}
EXTRA=()
[ -n "${DATA_PATH:-}" ] && EXTRA+=(--data_path "$DATA_PATH")
[ -n "${NUM_EXAMPLES:-}" ] && EXTRA+=(--num_examples "$NUM_EXAMPLES")
PY=${PYTHON:-.venv/bin/python}
mkdir -p logs "$OUT_DIR"
for SPLIT in train test; do
  "$PY" scripts/data_prep/generate_gsm8k_plans.py --model "$MODEL" --backend "$BACKEND" --split "$SPLIT" \
    --temperature "$TEMPERATURE" --top_p "$TOP_P" --max_tokens "$MAX_TOKENS" --batch_size "$BATCH_SIZE" \
    --tensor_parallel_size "$TP" --output_path "$OUT_DIR/gsm8k_hierarchical_${SPLIT}.json" "${EXTRA[@]}"
done
