"""python -m pytest tests/test_lmeval.py

The local-task path of run_lm_eval is checked against a brute-force log-likelihood scorer on a tiny
random model with a tiny byte-level tokenizer, and each converter against lm-eval's prompt format.
"""

import csv
import json

import numpy as np
import pytest
import torch

from shared_utils.errors import UserError
from shared_utils.lmeval import local_task_docs, run_lm_eval
from shared_utils.models import tiny_llama


def write_fake_data_dir(root):
    """A few rows per task, in the formats of ../shared/data."""
    (root / "arc_easy").mkdir(parents=True)
    arc = [{"id": f"q{i}", "question": {"stem": f"Which is number {i}?", "choices": [
        {"text": "one", "label": "A"}, {"text": "two", "label": "B"}, {"text": "three", "label": "C"}]},
        "answerKey": "ABC"[i % 3]} for i in range(6)]
    (root / "arc_easy" / "ARC-Easy-Test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in arc))
    (root / "boolq").mkdir()
    (root / "boolq" / "boolq.jsonl").write_text(json.dumps(
        {"query": "Passage: Cats are mammals.\nQuestion: is a cat a mammal?", "choices": ["no", "yes"], "gold": 1}) + "\n")
    (root / "winogrande").mkdir()
    wino = [{"context_options": ["The cup fell because the cup", "The cup fell because the table"],
             "continuation": "was slippery.", "gold": i % 2} for i in range(4)]
    (root / "winogrande" / "winogrande.jsonl").write_text("".join(json.dumps(r) + "\n" for r in wino))
    (root / "rte").mkdir()
    with (root / "rte" / "dev.tsv").open("w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["sentence1", "sentence2", "label", "idx"])
        w.writerow(['He said "yes".', "He agreed.", 0, 0])
    (root / "hellaswag").mkdir()
    (root / "hellaswag" / "hellaswag_val_full.txt").write_text(
        "Roof: A man [title] is on a roof. he\n2\nfalls.\njumps.\nstarts pulling up roofing.\nsits.\n")
    (root / "piqa").mkdir()
    (root / "piqa" / "valid.jsonl").write_text(json.dumps({"goal": "Open a jar", "sol1": "twist", "sol2": "bite"}) + "\n")
    (root / "piqa" / "valid-labels.lst").write_text("0\n")
    return root


def test_converters_use_lm_eval_prompts(tmp_path):
    d = write_fake_data_dir(tmp_path)
    arc = local_task_docs("arc_easy", d)
    assert arc[0] == {"query": "Question: Which is number 0?\nAnswer:", "choices": ["one", "two", "three"], "gold": 0}
    assert [x["gold"] for x in arc] == [0, 1, 2, 0, 1, 2]
    boolq = local_task_docs("boolq", d)[0]
    assert boolq["query"] == "Cats are mammals.\nQuestion: is a cat a mammal?\nAnswer:" and boolq["gold"] == 1
    rte = local_task_docs("rte", d)[0]
    assert rte["query"] == 'He said "yes".\nQuestion: He agreed. True or False?\nAnswer:' and rte["gold"] == 0
    hs = local_task_docs("hellaswag", d)[0]
    assert hs["query"] == "Roof: A man. is on a roof. he" and hs["gold"] == 2 and len(hs["choices"]) == 4
    assert local_task_docs("piqa", d)[0] == {"query": "Question: Open a jar\nAnswer:", "choices": ["twist", "bite"], "gold": 0}
    with pytest.raises(UserError, match="no local copy"):
        local_task_docs("mmlu", d)
    with pytest.raises(UserError, match="missing"):
        local_task_docs("openbookqa", d)


def byte_tokenizer(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Which is number one two three? The cup fell because the table was slippery."] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>")


def brute_force_scores(model, tok, context, continuations):
    """lm-eval's loglikelihood: encode context+continuation, score the continuation tokens."""
    out = []
    for cont in continuations:
        whole = tok(context + cont, add_special_tokens=False)["input_ids"]
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        cont_ids = whole[len(ctx):]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
        out.append(sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont_ids)))
    return np.array(out)


def test_run_lm_eval_local_matches_brute_force(tmp_path):
    d = write_fake_data_dir(tmp_path / "data")
    tok = byte_tokenizer(tmp_path)
    model = tiny_llama(seed=3, vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    res = run_lm_eval(tmp_path / "model", ["arc_easy", "winogrande"], data_dir=d, batch_size=4,
                      output_path=tmp_path / "out" / "results.json")
    acc, acc_norm = [], []
    for doc in local_task_docs("arc_easy", d):
        s = brute_force_scores(model, tok, doc["query"], [" " + c for c in doc["choices"]])
        lens = np.array([len(c) for c in doc["choices"]], dtype=float)
        acc.append(int(s.argmax()) == doc["gold"])
        acc_norm.append(int((s / lens).argmax()) == doc["gold"])
    wino = []
    for doc in local_task_docs("winogrande", d):  # partial scoring: one context per option
        s = [brute_force_scores(model, tok, ctx, [" " + doc["continuation"]])[0] for ctx in doc["context_options"]]
        wino.append(int(np.argmax(s)) == doc["gold"])
    assert res["arc_easy"]["n"] == 6 and res["winogrande"]["n"] == 4
    assert res["arc_easy"]["acc"] == pytest.approx(np.mean(acc))
    assert res["arc_easy"]["acc_norm"] == pytest.approx(np.mean(acc_norm))
    assert res["winogrande"]["acc"] == pytest.approx(np.mean(wino))
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(res)) and "local_arc_easy" in saved["results"]


def test_run_lm_eval_in_memory_per_sample_matches_brute_force(tmp_path):
    d = write_fake_data_dir(tmp_path / "data")
    tok = byte_tokenizer(tmp_path)
    model = tiny_llama(seed=5, vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    res = run_lm_eval(model, ["arc_easy"], data_dir=d, batch_size=4, tokenizer=tok, samples_dir=tmp_path / "s",
                      work_dir=tmp_path / "tasks")
    samples = res["arc_easy"]["samples"]
    assert [s["doc_id"] for s in samples] == list(range(6))
    for s, doc in zip(samples, local_task_docs("arc_easy", d)):
        scores = brute_force_scores(model, tok, doc["query"], [" " + c for c in doc["choices"]])
        assert s["acc"] == float(int(scores.argmax()) == doc["gold"])
    assert res["arc_easy"]["acc"] == pytest.approx(np.mean([s["acc"] for s in samples]))
    lines = (tmp_path / "s" / "samples_arc_easy.jsonl").read_text().splitlines()
    assert [json.loads(ln)["acc"] for ln in lines] == [s["acc"] for s in samples]
    with pytest.raises(Exception, match="tokenizer"):
        run_lm_eval(model, ["arc_easy"], data_dir=d, work_dir=tmp_path / "t2")
