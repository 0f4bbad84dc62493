"""Training: loss span, loss, micro-batching, schedule, checkpoints, resume, bad flags.

    python -m pytest tests/test_training.py -q
"""

import json
import math

import pytest
import torch
import train as train_script

from high_to_low.get_model import (
    bridge_params,
    build_model,
    lora_params_per_rank,
    matched_transformer_rank,
    parse_bridges,
    preset_bridges,
)
from high_to_low.reasoning_datasets import WordTokenizer, answer_text, generate
from high_to_low.training import (
    EPS,
    build_parser,
    checkpoint_folder,
    latest_checkpoint,
    load_trainable,
    lr_at,
    make_batch,
    span_logprobs,
    train,
    train_step,
)
from shared_utils.errors import NonFiniteLossError, UserError

TINY = ["--model_name", "tiny", "--tiny_layers", "2", "--dataset_name", "parity", "--seq_len", "6",
        "--batch_size", "8", "--num_train", "64", "--lr", "1e-3", "--warmup_steps", "2", "--device", "cpu"]


def args_for(root, *extra):
    return build_parser().parse_args(TINY + ["--checkpoint_root_folder", str(root), *extra])


def tiny_cfg(our_method=True, g=4):
    return dict(model_name="tiny", tiny_layers=2, our_method=our_method, bridges=[(1, 0)], bridge_rank=8,
                lora_rank=8, multiplier=100, group_size=g, full_finetune=True, split_batch_into=1,
                batch_size=8, seed=0)


def test_answer_span_is_colon_plus_answer():
    tok = WordTokenizer()
    items = generate("parity", 5, 0, seq_len=9) + generate("multi-step-arithmetic", 5, 0, max_n=5)
    ids, mask, span = make_batch(items, tok, 4)
    assert ids.shape[1] % 4 == 0
    for i, it in enumerate(items):
        assert tok.decode(ids[i][span[i]].tolist()) == answer_text(it) == ": " + it["output"]
        last = int(mask[i].sum()) - 1
        assert span[i, last] and not span[i, last + 1:].any()  # nothing after the answer (no EOS)


def test_span_logprobs_against_brute_force():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(0, 11, (2, 6))
    span = torch.zeros(2, 6, dtype=torch.bool)
    span[0, 3:5], span[1, 2:6] = True, True
    logp, nll, ok = span_logprobs(logits, ids, span)
    for b in range(2):
        pos = span[b].nonzero().flatten().tolist()
        probs = [torch.softmax(logits[b, p - 1], -1)[ids[b, p]] for p in pos]
        assert math.isclose(logp[b].exp().item(), math.prod(p.item() for p in probs), rel_tol=1e-5)
        assert math.isclose(nll[b].item(), sum(-math.log(p.item() + EPS) for p in probs), rel_tol=1e-5)
        assert ok[b].item() == all(logits[b, p - 1].argmax() == ids[b, p] for p in pos)


def test_schedule_matches_original():
    assert lr_at(0, 3e-5) == 0.0
    assert lr_at(50, 3e-5) == pytest.approx(1.5e-5)
    assert lr_at(100, 3e-5) == pytest.approx(3e-5)
    assert lr_at(550, 3e-5) == pytest.approx(1.5e-5)
    assert lr_at(1000, 3e-5) == 0.0  # restart
    assert lr_at(1100, 3e-5) == pytest.approx(3e-5)


def test_micro_batching_gives_the_same_gradient():
    items = generate("parity", 8, 0, seq_len=7)
    grads = []
    for k in (1, 2):
        model, tok = build_model(tiny_cfg())
        model.tokenizer = tok
        torch.manual_seed(0)
        for up in model.up:
            torch.nn.init.normal_(up.weight, 0, 0.1)
        params = [p for p in model.parameters()]
        opt = torch.optim.SGD(params, lr=0.0)
        cfg = {**tiny_cfg(), "split_batch_into": k}
        train_step(model, items, cfg, params, opt, None, torch.device("cpu"))
        grads.append(torch.cat([p.grad.flatten() for p in params]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_presets_and_generic_rule():
    b8 = preset_bridges("meta-llama/Llama-3.1-8B", 32)
    assert len(b8) == 45 and {s for s, _ in b8} == set(range(14, 31, 2)) and {d for _, d in b8} == set(range(7, 24, 2))
    assert sum(d == 7 for _, d in b8) == 9 and sum(s == 30 for s, _ in b8) == 9
    b1 = preset_bridges("meta-llama/Llama-3.2-1B", 16)
    assert len(b1) == 15 and {s for s, _ in b1} == {6, 8, 10, 12, 14} and {d for _, d in b1} == {0, 2, 4, 6, 8}
    smol = preset_bridges("smollm2-135m", 30)
    assert len(smol) == 36 and {s for s, _ in smol} == set(range(14, 29, 2)) and max(d for _, d in smol) == 21
    assert preset_bridges("tiny", 6) == [(3, 0), (4, 0), (4, 1), (5, 0), (5, 1), (5, 2)]
    assert all(s > d for s, d in preset_bridges("x", 12) + preset_bridges("x", 2))
    assert parse_bridges("5:0, 5:1", 6) == [(5, 0), (5, 1)]
    for bad in ("0:5", "9:1", "a:b"):
        with pytest.raises(UserError):
            parse_bridges(bad, 6)


def test_parameter_matching():
    from transformers import LlamaConfig

    smol = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                       num_key_value_heads=3)
    assert lora_params_per_rank(smol) == 305_280
    assert bridge_params(smol, 36, 12) == 518_832
    assert matched_transformer_rank(smol, 36, 12) == 14  # mirrors the original's 120 vs 140
    llama8b = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=8)
    assert round(lora_params_per_rank(llama8b) * 120 / 1e5) / 10 == 314.6
    assert round(bridge_params(llama8b, 45, 120) / 1e5) / 10 == 44.4


def test_checkpoints_resume_equals_uninterrupted(tmp_path):
    straight = train(args_for(tmp_path / "a", "--max_steps", "4", "--save_interval", "4"))
    train(args_for(tmp_path / "b", "--max_steps", "2", "--save_interval", "2"))
    resumed = train(args_for(tmp_path / "b", "--max_steps", "4", "--save_interval", "2"))
    assert straight.name == "improved_training_checkpoint_test_tiny_parity"
    names = {p.name for p in resumed.iterdir()}
    for j in (2, 4):
        assert {f"pretrain_improved_{j}.pth", f"optimizer_state_{j}.pth", f"loss_tracking_{j}.json",
                f"training_state_{j}.json"} <= names
    assert json.loads((resumed / "training_state_4.json").read_text()) == {"iteration": 4, "epoch": 0}
    cfg = json.loads((resumed / "save_configs.json").read_text())
    assert {"batch_size", "group_size", "base_lr", "warmup_steps", "period", "seed", "bridges", "model_name",
            "multiplier"} <= set(cfg)
    a = torch.load(straight / "pretrain_improved_4.pth")
    b = torch.load(resumed / "pretrain_improved_4.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((straight / "loss_tracking_4.json").read_text()) == \
        json.loads((resumed / "loss_tracking_4.json").read_text())
    assert latest_checkpoint(resumed) == 4
    with pytest.raises(UserError, match="group_size"):  # resuming with another config is refused
        train(args_for(tmp_path / "b", "--max_steps", "6", "--group_size", "2"))


def test_baseline_selected_by_our_method_false(tmp_path):
    folder = train(args_for(tmp_path, "--our_method", "False", "--max_steps", "1"))
    assert folder.name == "transformer_training_checkpoint_test_tiny_parity"
    cfg = json.loads((folder / "save_configs.json").read_text())
    assert cfg["our_method"] is False and cfg["bridges"] == []
    model, _ = build_model(cfg)
    with pytest.raises(UserError, match="does not match"):
        load_trainable(model, folder / "pretrain_improved_1.pth", ["nope"])


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    folder = train(args_for(tmp_path, "--max_steps", "1"))
    import high_to_low.training as tr

    real = tr.span_logprobs
    monkeypatch.setattr(tr, "span_logprobs", lambda *a: tuple(x * float("nan") if x.is_floating_point() else x
                                                               for x in real(*a)))
    with pytest.raises(NonFiniteLossError):
        train(args_for(tmp_path, "--max_steps", "3", "--save_interval", "1"))
    assert latest_checkpoint(folder) == 1


@pytest.mark.parametrize("flags, message", [
    (["--group_size", "0"], "group_size"),
    (["--split_batch_into", "3"], "split_batch_into 3 must divide"),
    (["--dataset_name", "sudoku"], "unknown --dataset_name"),
    (["--bridges", "1:4"], "destination < source"),
])
def test_bad_flags_fail_with_one_line(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        train_script.main(TINY + ["--checkpoint_root_folder", str(tmp_path), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_boolean_flags_parse_false():
    assert build_parser().parse_args(["--checkpoint_root_folder", "x", "--our_method", "False"]).our_method is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--checkpoint_root_folder", "x", "--our_method", "maybe"])
    assert checkpoint_folder("r", True, "meta-llama/Llama-3.1-8B", "gsm8k").name == \
        "improved_training_checkpoint_test_Llama-3.1-8B_gsm8k"
