"""Real-model checks (embedded SmolLM2-135M-Instruct): tokenizer compaction round trip, hf plan backend.

python -m pytest -m slow tests/test_slow.py -q
"""

import pytest
from conftest import FIXTURES

from hier_bd3lm.data import exec_text, read_records
from hier_bd3lm.tokenizer import UNK, CompactTokenizer

pytestmark = pytest.mark.slow
RECS = read_records(FIXTURES / "hier_gsm8k_train.json")


def test_compacted_smollm2_tokenizer_round_trips_gsm8k_text():
    texts = [t for r in RECS for t in (r["question"], r["plan"], exec_text(r))]
    tok = CompactTokenizer.fit("smollm2-135m", texts)
    for t in texts:
        ids = tok.encode(t)
        assert UNK not in ids and tok.decode(ids) == t
    capped = CompactTokenizer.fit("smollm2-135m", texts, max_vocab=50)
    assert capped.vocab_size == 4 + 50 + 1 and UNK in capped.encode(texts[0])


def test_hf_backend_uses_the_chat_template_and_returns_text():
    from hier_bd3lm.plans import build_record, make_backend
    from shared_utils.data import load_gsm8k

    rows = load_gsm8k("train", FIXTURES / "gsm8k_train.jsonl", 1)
    backend = make_backend("hf", "smollm2-135m", 0.0, 1.0, 8, "readme")
    prompt = backend.tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                             add_generation_prompt=True)
    assert "<|im_start|>assistant" in prompt
    plans = backend.generate(rows)
    rec = build_record("train", 0, rows[0], plans[0])
    assert len(plans) == 1 and rec["plan"] and rec["answer_numerical"] == "72"
