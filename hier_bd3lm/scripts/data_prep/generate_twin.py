"""Write the solvable GSM8K twin (train / test / longer) as README-format hierarchical records.

python scripts/data_prep/generate_twin.py --output_dir data/twin --n_train 20000 --n_test 500 --n_longer 500
Files: twin_train.json, twin_test.json, twin_longer.json ({"id", "question", "plan", "execution",
"answer_numerical", "ops"}); train/test have 2-4 operations, longer has one more than the most in train.
"""

import argparse
import json

from hier_bd3lm.guards import check_output_dir
from hier_bd3lm.twin import make_twin
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output_dir", required=True)
    p.add_argument("--n_train", type=int, default=20000)
    p.add_argument("--n_test", type=int, default=500)
    p.add_argument("--n_longer", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min_ops", type=int, default=2)
    p.add_argument("--max_ops", type=int, default=4)
    return p.parse_args(argv)


def write_twin(output_dir, n_train, n_test, n_longer, seed=0, min_ops=2, max_ops=4) -> dict:
    for name, v in (("--n_train", n_train), ("--n_test", n_test), ("--n_longer", n_longer), ("--min_ops", min_ops)):
        if v < 1:
            raise UserError(f"{name} must be >= 1, got {v}")
    if max_ops < min_ops:
        raise UserError(f"--max_ops {max_ops} < --min_ops {min_ops}")
    out = check_output_dir(output_dir, "--output_dir")
    splits = make_twin(n_train, n_test, n_longer, seed, (min_ops, max_ops), max_ops + 1)
    paths = {}
    for split, recs in splits.items():
        paths[split] = str(out / f"twin_{split}.json")
        atomic_write_text(paths[split], json.dumps(recs, indent=1))
    return paths


@cli_main
def main(argv=None):
    a = parse_args(argv)
    print(json.dumps(write_twin(a.output_dir, a.n_train, a.n_test, a.n_longer, a.seed, a.min_ops, a.max_ops)))


if __name__ == "__main__":
    main()
