"""Checkpoints keep the merge-modified base weights; resume == uninterrupted; peft / HF round trips.

    python -m pytest tests/test_checkpoint.py -q
"""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from shared_utils.errors import UserError
from shared_utils.models import tiny_llama
from superrelora.checkpoint import export_merged, load_state, save_adapter_and_base
from superrelora.config import LLAMA_TARGETS
from superrelora.merge import lora_layers, partial_merge
from superrelora.train import run_training


def merged_model():
    torch.manual_seed(3)
    model = get_peft_model(tiny_llama(seed=0, vocab_size=259), LoraConfig(r=4, lora_alpha=8, target_modules=LLAMA_TARGETS))
    with torch.no_grad():
        for _ in range(2):
            for _, layer in lora_layers(model):
                layer.lora_B["default"].weight.normal_(0, 0.05)
            partial_merge(model, 0.3)
    return model.eval()


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_adapter_only_checkpoint_loses_merges_and_state_file_restores_them(tmp_path, batch):
    model = merged_model()
    ref = logits(model, batch)
    save_adapter_and_base(model, tmp_path / "ckpt")
    # peft interoperability: a plain PeftModel.from_pretrained works ...
    plain = PeftModel.from_pretrained(tiny_llama(seed=0, vocab_size=259), tmp_path / "ckpt").eval()
    assert (logits(plain, batch) - ref).abs().max() > 1e-3  # ... but onto the ORIGINAL base: merges are lost
    n = load_state(plain, tmp_path / "ckpt")
    assert n == 2 * 7 * 3  # base weight + A + B per targeted layer
    assert torch.equal(logits(plain, batch), ref)


def test_merged_export_loads_with_automodel(tmp_path, batch):
    model = merged_model()
    ref = logits(model, batch)
    export_merged(model, tmp_path / "merged")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    assert torch.allclose(logits(hf, batch), ref, atol=1e-5)
    assert isinstance(model, PeftModel)  # exported from a copy: the training model keeps its adapters


def test_state_file_mismatch_is_one_clear_error(tmp_path):
    save_adapter_and_base(merged_model(), tmp_path / "ckpt")
    other = get_peft_model(tiny_llama(seed=0, vocab_size=259), LoraConfig(r=4, target_modules=["q_proj"]))
    with pytest.raises(UserError, match="do not exist in this model"):
        load_state(other, tmp_path / "ckpt")
    with pytest.raises(UserError, match="no superrelora_state"):
        load_state(other, tmp_path)


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("use_trainer", [False, True])
def test_resume_equals_uninterrupted(tiny_cfg, tmp_path, use_trainer):
    full = run_training(tiny_cfg(output_dir=str(tmp_path / "a"), save_steps=3, use_trainer=use_trainer),
                        export=False, evaluate=False)
    a = full.pop("_setup")
    resumed = run_training(tiny_cfg(output_dir=str(tmp_path / "b"), use_trainer=use_trainer,
                                    resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-3")),
                           export=False, evaluate=False)
    b = resumed.pop("_setup")
    la = [r["loss"] for r in a.history if r["step"] > 3]
    lb = [r["loss"] for r in b.history if r["step"] > 3]
    assert len(lb) == 3 and torch.allclose(torch.tensor(la), torch.tensor(lb), rtol=1e-5)
    wa, wb = _weights(a.model), _weights(b.model)
    for n in wa:  # includes the base weights changed by the merge at update 2 (before the checkpoint)
        assert torch.allclose(wa[n], wb[n], rtol=1e-5, atol=1e-7), n


def test_final_model_reloads_with_merged_base(tiny_cfg, tmp_path, batch):
    from superrelora.checkpoint import load_final_model

    summary = run_training(tiny_cfg(output_dir=str(tmp_path / "r")), export=True, evaluate=False)
    model = summary.pop("_setup").model.eval()
    ref = logits(model, batch)
    again = load_final_model(str(tmp_path / "unused.json"), tmp_path / "r", base=tiny_llama(seed=5, vocab_size=259))
    assert torch.equal(logits(again, batch), ref)  # every tensor came from the run, none from the given base
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "r" / "merged_model").eval()
    assert torch.allclose(logits(hf, batch), ref, atol=1e-5)


def test_missing_checkpoint_is_user_error(tiny_cfg, tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        run_training(tiny_cfg(resume_from_checkpoint=str(tmp_path / "nope")), export=False, evaluate=False)


@pytest.mark.parametrize("use_trainer", [False, True])
def test_resume_with_different_settings_is_refused_and_same_settings_keep_merge_log(tiny_cfg, tmp_path, use_trainer):
    """Resuming a merge_every=2 run from checkpoint-3 with merge_every 3 exits with the key and both values;
    with the same config, merges.json equals the uninterrupted run's (the step-2 merge stays on record)."""
    import json

    a = tmp_path / "a"
    run_training(tiny_cfg(output_dir=str(a), save_steps=3, use_trainer=use_trainer), export=False, evaluate=False)
    ckpt = str(a / "checkpoint-3")
    for key, value, shown in [("merge_every", 3, "merge_every: checkpoint has 2, this run has 3"),
                              ("batch_size", 2, "batch_size: checkpoint has 4, this run has 2"),
                              ("method", "lora", "method: checkpoint has 'superrelora', this run has 'lora'"),
                              ("merge_alpha", 0.2, "merge_alpha: checkpoint has 0.1, this run has 0.2")]:
        with pytest.raises(UserError, match="cannot resume") as exc:
            run_training(tiny_cfg(output_dir=str(tmp_path / "b"), use_trainer=use_trainer, resume_from_checkpoint=ckpt,
                                  **{key: value}), export=False, evaluate=False)
        assert shown in str(exc.value)
    assert not (tmp_path / "b" / "config.json").exists()  # refused before anything was written
    run_training(tiny_cfg(output_dir=str(tmp_path / "b"), use_trainer=use_trainer, resume_from_checkpoint=ckpt),
                 export=False, evaluate=False)
    merges_a = json.loads((a / "merges.json").read_text())
    assert [e["step"] for e in merges_a] == [2, 4, 6]
    assert json.loads((tmp_path / "b" / "merges.json").read_text()) == merges_a


def test_corrupt_checkpoint_files_are_one_line(tiny_cfg, tmp_path):
    a = tmp_path / "a"
    run_training(tiny_cfg(output_dir=str(a), save_steps=3, max_steps=4), export=False, evaluate=False)
    ckpt = a / "checkpoint-3"
    opt = ckpt / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match="corrupt or truncated"):
        run_training(tiny_cfg(output_dir=str(tmp_path / "b"), resume_from_checkpoint=str(ckpt)), export=False,
                     evaluate=False)
    (ckpt / "superrelora_run.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        run_training(tiny_cfg(output_dir=str(tmp_path / "b"), resume_from_checkpoint=str(ckpt)), export=False,
                     evaluate=False)
