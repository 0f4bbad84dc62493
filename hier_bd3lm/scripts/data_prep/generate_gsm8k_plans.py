"""Generate abstract plans for GSM8K and write the README's hierarchical JSON records.

python scripts/data_prep/generate_gsm8k_plans.py --model meta-llama/Meta-Llama-3-8B-Instruct --split train \
    --num_examples 100 --output_path data/gsm8k/test_100.json            # vLLM (GPU)
python scripts/data_prep/generate_gsm8k_plans.py --backend hf --model smollm2-135m --split test \
    --num_examples 20 --data_path ../../shared/data/gsm8k --output_path data/gsm8k/smollm2_test_20.json
python scripts/data_prep/generate_gsm8k_plans.py --backend rule --split train --data_path ../../shared/data/gsm8k \
    --output_path data/gsm8k/gsm8k_hierarchical_train.json
Records: {"id", "question", "plan", "execution", "answer_numerical"}; written after every batch, and a partly
written output file is resumed (records already there are kept, generation continues after them).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from hier_bd3lm.guards import check_output_path
from hier_bd3lm.plans import build_record, make_backend
from hier_bd3lm.records import read_records
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="meta-llama/Meta-Llama-3-8B-Instruct", help="plan generator (vllm/hf)")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--num_examples", type=int, default=None, help="first N problems (default: all)")
    p.add_argument("--output_path", required=True)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top_p", type=float, default=0.9)
    p.add_argument("--max_tokens", type=int, default=256)
    p.add_argument("--tensor_parallel_size", type=int, default=1)
    p.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf", "rule"],
                   help="auto: vllm when installed, else hf")
    p.add_argument("--data_path", default=None, help="local GSM8K dir/jsonl (offline); default: Hub openai/gsm8k")
    p.add_argument("--prompt_style", default="fewshot", choices=["fewshot", "readme", "fork"],
                   help="fewshot: three abstract-plan examples (default); readme: the README prompt with one example")
    p.add_argument("--suppress_digits", action="store_true", help="hf backend: forbid tokens with digits while decoding")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_resume", action="store_true", help="overwrite an existing output file")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for the hf backend (1 is far faster on a shared machine; 0 = torch default)")
    return p.parse_args(argv)


def pick_backend(name: str) -> str:
    if name != "auto":
        return name
    try:
        import vllm  # noqa: F401
        return "vllm"
    except ImportError:
        return "hf"


def generate(args) -> dict:
    from shared_utils.data import load_gsm8k

    if args.batch_size < 1 or (args.num_examples is not None and args.num_examples < 1):
        raise UserError("--batch_size and --num_examples must be >= 1")
    if args.max_tokens < 1 or args.tensor_parallel_size < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
        raise UserError("--max_tokens and --tensor_parallel_size must be >= 1, --temperature >= 0, --top_p in (0, 1]")
    out = check_output_path(args.output_path, "--output_path")
    if out.is_dir():
        raise UserError(f"--output_path {out} is a directory, not a file")
    if args.backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise UserError("vLLM is not installed (pip install vllm, GPU only); use --backend hf or --backend rule")
    if args.backend != "rule":  # an unknown model offline fails here, before torch/transformers are imported
        from shared_utils.models import is_embedded, resolve_model_path

        if not is_embedded(args.model) and not Path(args.model).is_dir():
            resolve_model_path(args.model, flag="--model")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = load_gsm8k(args.split, args.data_path, args.num_examples)
    done = []
    if out.is_file() and not args.no_resume:
        done = read_records(out)
        expected = [f"gsm8k_{args.split}_{i}" for i in range(len(done))]
        if [r.get("id") for r in done] != expected:
            raise UserError(f"{out} holds records of another run (ids do not match); use --no_resume to overwrite")
    backend_name = pick_backend(args.backend)
    todo = list(range(len(done), len(rows)))
    t0, n_new = time.perf_counter(), 0
    if todo:
        backend = make_backend(backend_name, args.model, args.temperature, args.top_p, args.max_tokens,
                               args.prompt_style, args.tensor_parallel_size, args.seed, args.suppress_digits)
        t0 = time.perf_counter()
        for s in tqdm(range(0, len(todo), args.batch_size), desc=f"plans ({backend_name})", file=sys.stderr):
            idx = todo[s:s + args.batch_size]
            plans = backend.generate([rows[i] for i in idx])
            done += [build_record(args.split, i, rows[i], p) for i, p in zip(idx, plans)]
            n_new += len(idx)
            atomic_write_text(out, json.dumps(done, indent=2, ensure_ascii=False))
    elif not out.is_file():
        atomic_write_text(out, "[]")
    secs = time.perf_counter() - t0
    return {"output_path": str(out), "records": len(done), "generated": n_new, "backend": backend_name,
            "seconds": secs, "examples_per_second": n_new / secs if n_new and secs > 0 else None}


@cli_main
def main(argv=None):
    print(json.dumps(generate(parse_args(argv))))


if __name__ == "__main__":
    main()
