"""Hierarchical GSM8K loader CLI: dataset summary, or token-length statistics with `--analyze`.

python gsm8k_dataloader.py --data_path data/gsm8k/gsm8k_hierarchical_train.json --analyze
python gsm8k_dataloader.py --data_path FILE --tokenizer char | head -50
"""

import argparse

from hier_bd3lm.data import analyze_lengths, encode_records, load_gsm8k_hierarchical, read_records  # noqa: F401
from hier_bd3lm.masks import Layout
from hier_bd3lm.tokenizer import fit_tokenizer
from shared_utils.errors import cli_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", required=True)
    p.add_argument("--tokenizer", default="smollm2-135m", help="smollm2-135m (embedded), gpt2, a dir, or char")
    p.add_argument("--analyze", action="store_true")
    p.add_argument("--question_len", type=int, default=128)
    p.add_argument("--plan_len", type=int, default=128)
    p.add_argument("--exec_len", type=int, default=256)
    p.add_argument("--block_size", type=int, default=16)
    return p.parse_args(argv)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    recs = read_records(args.data_path)
    texts = [str(r[k]) for r in recs for k in ("question", "plan", "execution", "answer_numerical")] + ["\n#### "]
    tok = fit_tokenizer(args.tokenizer, texts)
    if args.analyze:
        res = analyze_lengths(recs, tok)
        print(f"Token lengths ({args.tokenizer}, {len(recs)} examples; +1 for BOS / end-of-segment):")
        print(f"{'Component':<10} {'count':>6} {'mean':>7} {'median':>7} {'min':>5} {'max':>5} {'p95':>7} {'p99':>7}")
        for name, s in res["stats"].items():
            print(f"{name:<10} {s['count']:>6} {s['mean']:>7.1f} {s['median']:>7.1f} {s['min']:>5} {s['max']:>5} "
                  f"{s['p95']:>7.1f} {s['p99']:>7.1f}")
        r = res["recommended"]
        print(f"Recommended (p95): question {r['Question']}, plan {r['Plan']}, execution {r['Execution']}, "
              f"total {r['Total']}")
        return
    layout = Layout(args.question_len, args.plan_len, args.exec_len, args.block_size)
    enc = encode_records(recs, tok, layout)
    ex = enc.meta[0]
    print(f"Dataset size: {len(enc)}; input_ids {tuple(enc.input_ids.shape)}; vocab {tok.vocab_size} "
          f"(PAD {tok.pad_id}, MASK {tok.mask_id})")
    print(f"First example: id {ex['id']}, answer {ex['answer_numerical']}")
    print(f"  slots: question {layout.question_len}, plan {layout.plan_len}, execution {layout.exec_len}")
    print(f"  loss tokens {int(enc.loss_mask[0].sum())}, content tokens {int(enc.content_mask[0].sum())}")
    print(f"  question: {tok.decode(enc.input_ids[0, :layout.question_len])!r}")


if __name__ == "__main__":
    main()
