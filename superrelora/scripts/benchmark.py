"""SuperReLoRA vs plain peft LoRA: step time ratio, merge share of training time, peak memory (one run).

    python scripts/benchmark.py [--model smollm2-135m] [--steps 8] [--merge_every 2] [--repeats 2]
    python scripts/benchmark.py --model configs/tiny_llama.json --steps 20     # seconds, for a quick check
"""

import datetime
import json
import platform
import sys
from pathlib import Path

from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json
from superrelora.bench import main


@cli_main
def run():
    res = main(sys.argv[1:])
    if res is None:
        return
    res.update({"command": "python " + " ".join(sys.argv), "machine": f"{platform.platform()}",
                "date": datetime.datetime.now().isoformat(timespec="seconds")})
    print(f"step time  LoRA {res['lora_step_s']:.3f} s | SuperReLoRA {res['superrelora_step_s']:.3f} s | "
          f"ratio {res['step_time_ratio']:.3f}x (goal <= 1.05x); with merges every {res['merge_every']} amortised: "
          f"{res['step_time_ratio_with_merges']:.3f}x")
    print(f"merge      {res['merge_s_each'] * 1000:.1f} ms each | share of this run "
          f"{100 * res['merge_share_in_run']:.2f} % (merge every {res['merge_every']}) | at merge_every 500: "
          f"{100 * res['merge_share_at_merge_every_500']:.3f} % (goal < 2 %)")
    print(f"peak RSS   LoRA {res['lora_peak_rss_mb']:.0f} MB | SuperReLoRA {res['superrelora_peak_rss_mb']:.0f} MB")
    Path("results").mkdir(exist_ok=True)
    atomic_write_json("results/benchmark.json", res)
    print(json.dumps(res))


if __name__ == "__main__":
    run()
