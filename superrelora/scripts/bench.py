"""`make bench`: SuperReLoRA vs peft LoRA update time (ratio with 95% CI, limit, MFU) -> results/bench.{json,md}.

    python scripts/bench.py [--rounds 20] [--out results]
"""

import sys

from superrelora.bench_table import main

if __name__ == "__main__":
    sys.exit(main())
