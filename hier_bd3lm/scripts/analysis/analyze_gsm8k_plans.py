"""Plan-abstraction analysis: number density, operations, lengths, abstraction categories, 4-panel figure.

python scripts/analysis/analyze_gsm8k_plans.py --data_path data/gsm8k/gsm8k_hierarchical_train.json \
    --output_plot analysis.png --num_samples 10
"""

import argparse

from hier_bd3lm.analysis import CATEGORIES, analyze, count_numbers, plot, report_lines
from hier_bd3lm.guards import check_output_path
from hier_bd3lm.records import read_records
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", required=True)
    p.add_argument("--output_plot", default="gsm8k_analysis.png")
    p.add_argument("--num_samples", type=int, default=5, help="examples to print")
    p.add_argument("--baseline_path", default=None, help="a second records file to compare against")
    p.add_argument("--strip_annotations", action="store_true", help="drop <<...>> from executions first")
    p.add_argument("--output_json", default=None)
    return p.parse_args(argv)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    for flag, path in (("--output_plot", args.output_plot), ("--output_json", args.output_json)):
        if path is not None and (check_output_path(path, flag).is_dir()):
            raise UserError(f"{flag} {path} is a directory, not a file")
    if args.num_samples < 0:
        raise UserError(f"--num_samples must be >= 0, got {args.num_samples}")
    recs = read_records(args.data_path)
    res = analyze(recs, args.strip_annotations)
    print("\n".join(report_lines(res)))
    too = [r for r in recs if count_numbers(r["plan"]) > CATEGORIES[-1][1] - 1]
    if too:
        print(f"\nToo concrete example ({too[0].get('id')}): {too[0]['plan']}")
    for r in recs[: args.num_samples]:
        print(f"\n--- {r.get('id')}\nQuestion: {r['question']}\nPlan: {r['plan']}\nExecution: {r['execution']}"
              f"\nAnswer: {r['answer_numerical']}")
    if args.baseline_path:
        base = analyze(read_records(args.baseline_path), args.strip_annotations)
        print(f"\nBaseline {args.baseline_path}: plan numbers {base['plan_numbers_mean']:.2f} vs "
              f"{res['plan_numbers_mean']:.2f}; good abstraction {base['good_abstraction_rate']:.1f}% vs "
              f"{res['good_abstraction_rate']:.1f}%")
    plot(res, args.output_plot)
    print(f"\nSaved figure to {args.output_plot}")
    if args.output_json:
        atomic_write_json(args.output_json, {k: v for k, v in res.items() if not k.startswith("_")})


if __name__ == "__main__":
    main()
