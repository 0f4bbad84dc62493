"""Small-scale reproduction of the README table (see llm_streamline.table for every flag).

    python scripts/make_table.py --eval_data_dir ../../shared/data --data_path ../../shared/data/wikitext2/valid.txt \
        --ppl_data_path ../../shared/data/wikitext2/raw/wiki.test.raw --limit 20
"""

from llm_streamline.table import run_table
from shared_utils.errors import cli_main

if __name__ == "__main__":
    cli_main(run_table)()
