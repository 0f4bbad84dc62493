"""`make smoke`: the whole pipeline on the embedded SmolLM2-135M-Instruct, CPU, offline, about 2-3 minutes.

    python scripts/smoke.py

Scores the candidate blocks (n = 8) on embedded text, trains the replacement layer with MSE loss on a few
64-token blocks, saves the pruned 22-layer model, reloads it with plain AutoModelForCausalLM and compares its
perplexity with the untrained pruned model and the original; writes runs/smoke/summary.json.
"""

import json
import sys
import time
from pathlib import Path

from llm_streamline.evaluate import perplexity, ppl_blocks
from llm_streamline.mse_train import run as run_mse
from llm_streamline.surgery import streamline_model
from shared_utils.errors import cli_main
from shared_utils.models import load_causal_lm, load_tokenizer
from shared_utils.runs import atomic_write_json

OUT = Path("runs/smoke")


@cli_main
def main():
    t0 = time.time()
    argv = ["--model_name", "smollm2-135m", "--data_path", "embedded", "--seq_len", "64", "--train_num_data", "24",
            "--cosine_num_data", "8", "--num_test_blocks", "8", "--batch_size", "8", "--gradient_accumulation_step",
            "1", "--epoches", "2", "--lr", "5e-4", "--mse_loss_start", "1", "--device", "cpu",
            "--output_dir", str(OUT / "pruned")]
    out = run_mse(argv)
    record = json.loads((out / "streamline.json").read_text())
    tok = load_tokenizer("smollm2-135m")
    original = load_causal_lm("smollm2-135m")
    pruned = load_causal_lm(str(out))  # plain from_pretrained on the saved directory
    blocks = ppl_blocks(tok, "embedded", 128, 4)
    ppl = {"original": perplexity(original, blocks),
           "removed_untrained": perplexity(streamline_model(original, record["best_layer"], 8), blocks),
           "streamline_mse": perplexity(pruned, blocks)}
    summary = {"what": f"LLM-Streamline MSE on SmolLM2-135M: layers 30 -> {pruned.config.num_hidden_layers} "
                       f"(block {record['best_layer']}..{record['best_layer'] + 8}), embedded text, CPU",
               "metric": "perplexity of the pruned model (embedded validation text, 512 tokens)",
               "value": round(ppl["streamline_mse"], 3), "details": {**ppl, "seconds": round(time.time() - t0, 1)}}
    atomic_write_json(OUT / "summary.json", summary)
    print(json.dumps(summary["details"]), file=sys.stderr)


if __name__ == "__main__":
    main()
