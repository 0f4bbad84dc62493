"""The README table with intervals and the pruning curve (see llm_streamline.table for every flag and preset).

    python scripts/make_table.py --preset cpu --eval_data_dir ../../shared/data \
        --data_path ../../shared/data/wikitext2/valid.txt --ppl_data_path ../../shared/data/wikitext2/raw/wiki.test.raw
    python scripts/make_table.py --preset gpu --dry_run        # the GPU preset's plan, nothing run
"""

from llm_streamline.table import run_table
from shared_utils.errors import cli_main

if __name__ == "__main__":
    cli_main(run_table)()
