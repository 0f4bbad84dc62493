#!/bin/bash
# End-to-end pipeline on a few GSM8K problems, CPU, offline (also `make smoke`, ~2-3 minutes on 2 cores):
# plans (rule backend + 2 SmolLM2 plans) -> plan analysis -> token lengths -> mask checks -> train Hier BD3-LM
# -> ppl_eval -> sample_eval (KV cache) -> runs/smoke/summary.json.
#   bash test_gsm8k_pipeline.sh            (GSM8K_PATH=../../shared/data/gsm8k to use the real files)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/smoke}
GSM8K_TRAIN=${GSM8K_PATH:-tests/fixtures}/$( [ -n "${GSM8K_PATH:-}" ] && echo train.jsonl || echo gsm8k_train.jsonl)
GSM8K_TEST=${GSM8K_PATH:-tests/fixtures}/$( [ -n "${GSM8K_PATH:-}" ] && echo test.jsonl || echo gsm8k_test.jsonl)
NUM_TRAIN=${NUM_TRAIN:-12}
STEPS=${STEPS:-40}
rm -rf "$OUT" && mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[1/7] plans: rule backend"
"$PY" scripts/data_prep/generate_gsm8k_plans.py --backend rule --split train --num_examples "$NUM_TRAIN" \
  --data_path "$GSM8K_TRAIN" --output_path "$OUT/gsm8k_hierarchical_train.json"
"$PY" scripts/data_prep/generate_gsm8k_plans.py --backend rule --split test --num_examples 6 \
  --data_path "$GSM8K_TEST" --output_path "$OUT/gsm8k_hierarchical_test.json"
echo "[2/7] plans: embedded SmolLM2-135M-Instruct (hf backend, 2 problems)"
"$PY" scripts/data_prep/generate_gsm8k_plans.py --backend hf --model smollm2-135m --split test --num_examples 2 \
  --batch_size 2 --max_tokens 32 --temperature 0 --data_path "$GSM8K_TEST" --output_path "$OUT/smollm2_plans.json"
echo "[3/7] plan analysis"
"$PY" scripts/analysis/analyze_gsm8k_plans.py --data_path "$OUT/gsm8k_hierarchical_train.json" \
  --output_plot "$OUT/gsm8k_analysis.png" --num_samples 1 | tail -n 12
echo "[4/7] token lengths"
"$PY" gsm8k_dataloader.py --data_path "$OUT/gsm8k_hierarchical_train.json" --analyze
"$PY" test_hierarchical_mask.py
echo "[5/7] train Hier BD3-LM ($STEPS steps)"
"$PY" main.py mode=train model=micro block_size=16 training.hierarchical.question_len=96 \
  training.hierarchical.plan_len=48 training.hierarchical.exec_len=128 training.hierarchical.total_len=272 \
  training.max_steps="$STEPS" trainer.val_check_interval="$STEPS" lr_scheduler.num_warmup_steps=6 optim.lr=3e-3 \
  loader.batch_size=4 trainer.num_threads=1 data.train_path="$OUT/gsm8k_hierarchical_train.json" \
  data.test_path="$OUT/gsm8k_hierarchical_test.json" checkpointing.save_dir="$OUT/train" > "$OUT/train.json"
echo "[6/7] ppl_eval"
"$PY" main.py mode=ppl_eval eval.checkpoint_path="$OUT/train/checkpoints/last.ckpt" eval.mc_samples=2 \
  loader.eval_batch_size=6 eval.output_path="$OUT/ppl.json" > /dev/null
echo "[7/7] sample_eval (KV cache)"
"$PY" main.py mode=sample_eval eval.checkpoint_path="$OUT/train/checkpoints/last.ckpt" loader.eval_batch_size=2 \
  sampling.num_sample_batches=1 sampling.kv_cache=true eval.output_path="$OUT/samples.json" > /dev/null
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
ppl, smp = json.loads((out / "ppl.json").read_text()), json.loads((out / "samples.json").read_text())
print(f"val NELBO/content token {ppl['nll_per_content_token']:.3f} (bound), exec {ppl['exec_nll_per_token']:.3f}; "
      f"sampling acc {smp['acc_strict']:.2f}, {smp['nfe_per_sample']:.0f} NFEs, {smp['seconds_per_sample']:.2f} s/sample")
summary = {"what": "GSM8K plans (rule + SmolLM2) -> Hier BD3-LM micro train -> ppl_eval -> KV-cache sampling",
           "metric": "val NELBO per content token (nats, upper bound)", "value": round(ppl["nll_per_content_token"], 4)}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
PYEOF
