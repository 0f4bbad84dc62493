"""Phase-2 datagen (target position), SequenceTRM recursion, EMA and training loop:
python -m pytest tests/test_phase2.py -q"""

import dataclasses

import pytest
import torch

from llm_trm.data import Problem, make_problems, think_token_span, thinking_text
from llm_trm.phase2 import Phase2Config, pad_collate, supervision_step, train_trm
from llm_trm.phase2_datagen import DatagenConfig, pairs_for_texts
from llm_trm.phase2_datagen import run as datagen
from llm_trm.trm import EMA, SequenceTRM, TRMConfig, halt_loss
from shared_utils.errors import UserError


def _bpe_tokenizer():
    """A BPE with merges learned on thinking texts, so tokens straddle the delimiters' edges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from llm_trm.tiny import CHATML

    tk = Tokenizer(models.BPE(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_next")
    from llm_trm.tiny import tiny_tokenizer

    base = tiny_tokenizer()
    texts = [thinking_text(base, p)[0] for p in make_problems(200, seed=3)]
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]", "<|im_end|>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|im_end|>")
    tok.chat_template = CHATML
    return tok


def _brute_span(tok, text, prompt_chars):
    """Brute force: decode growing prefixes; start = first token whose prefix reaches into '<think>',
    end = first token whose prefix contains the whole '</think>' after the prompt."""
    ids = tok(text, add_special_tokens=False).input_ids
    c0 = text.find("<think>", prompt_chars)
    c1 = text.find("</think>", c0) + len("</think>")
    pieces = tok.convert_ids_to_tokens(ids)
    if tok.decode(ids[:1]) != pieces[0]:  # byte-level symbols: decode is exact there
        pieces = [tok.decode([i]) for i in ids]
    lens = [len("".join(pieces[: i + 1])) for i in range(len(ids))]
    start = next(i for i, n in enumerate(lens) if n > c0)
    end = next(i for i, n in enumerate(lens) if n >= c1)
    return start, end


@pytest.mark.parametrize("tok_kind", ["bytes", "bpe"])
def test_think_span_matches_brute_force(tok_kind, tiny_tok):
    tok = tiny_tok if tok_kind == "bytes" else _bpe_tokenizer()
    probs = make_problems(20, seed=5) + [Problem("Is <think> a tag? and </think>? Answer with only the number.", "x", 7)]
    multi = 0
    for p in probs:
        text, pc = thinking_text(tok, p)
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        span = think_token_span([tuple(o) for o in enc.offset_mapping], text, pc)
        assert span == _brute_span(tok, text, pc)
        assert enc.offset_mapping[span[0]][1] > pc  # found after the prompt, even when the question has tags
        after = tok.decode(enc.input_ids[span[1] + 1:])
        assert after.startswith(f"\n{p.lead}{p.answer}") or tok_kind == "bpe"
        multi += len(tok.tokenize("</think>")) > 1
    assert multi or tok_kind == "bpe"  # bytes: multi-token delimiters; bpe: merges straddle the edges


def test_missing_delimiter_raises(tiny_tok):
    with pytest.raises(ValueError):
        think_token_span([(i, i + 1) for i in range(10)], "no tags here", 0)


def test_datagen_teacher_forcing_and_resume(tmp_path, tiny_lm, tiny_tok, monkeypatch):
    from llm_trm.data import addition_problem, template_prefix
    from llm_trm.llm import LazyLLM

    llm = LazyLLM("tiny", torch.device("cpu"), tiny_lm)
    cfg = DatagenConfig(num_samples=6, batch_size=2, checkpoint_every=2, output_dir=str(tmp_path / "a"),
                        model_name="tiny", max_seq_length=512, heldout_fraction=0.34)
    full = datagen(cfg, llm, tiny_tok)
    assert full["split"].tolist() == [0, 0, 0, 0, 1, 1] and full["shared_prefix_tokens"] > 0
    a, b = (int(v) for v in full["problems"][0].removeprefix("What is ").rstrip("?").split(" + "))
    p = addition_problem(a, b)
    text, pc = thinking_text(tiny_tok, p)
    enc = tiny_tok(text, return_offsets_mapping=True, add_special_tokens=False)
    s, _ = think_token_span([tuple(o) for o in enc.offset_mapping], text, pc)
    n_pre = len(tiny_tok(template_prefix(tiny_tok), add_special_tokens=False).input_ids)
    t_ans = len(tiny_tok(text[: text.rindex(p.lead) + len(p.lead)], add_special_tokens=False).input_ids)
    assert tiny_tok.decode(enc.input_ids[t_ans: t_ans + 1]) == str(p.answer)[0]  # the answer's first token
    out = tiny_lm(torch.tensor([enc.input_ids]), output_hidden_states=True)
    assert torch.allclose(full["hidden_pre"][0], out.hidden_states[-1][0, n_pre:s], atol=1e-4)
    assert torch.allclose(full["hidden_post"][0], out.hidden_states[-1][0, t_ans - 1], atol=1e-4)
    assert full["post_token_id"][0] == out.logits[0, t_ans - 1].argmax()
    assert full["answer_token_id"][0] == enc.input_ids[t_ans]
    assert full["base_token_id"][0] == -1 and full["base_token_id"][-1] >= 0  # base first token: held-out only
    assert 0 <= full["target_hit_rate"] <= 1
    # interrupted after the first batch, then resumed: same pairs as the uninterrupted run
    import llm_trm.phase2_datagen as dg

    calls = {"n": 0}
    real = dg.pairs_for_texts

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    cfg_b = dataclasses.replace(cfg, output_dir=str(tmp_path / "b"))
    monkeypatch.setattr(dg, "pairs_for_texts", flaky)
    with pytest.raises(KeyboardInterrupt):
        datagen(cfg_b, llm, tiny_tok)
    monkeypatch.setattr(dg, "pairs_for_texts", real)
    resumed = datagen(cfg_b, llm, tiny_tok)
    assert torch.allclose(resumed["hidden_post"], full["hidden_post"], atol=1e-6)
    assert resumed["answers"] == full["answers"]
    with pytest.raises(UserError, match="different"):
        (tmp_path / "b" / "checkpoint_hidden_pairs.pt").write_bytes((tmp_path / "a" / "hidden_pairs.pt").read_bytes())
        datagen(dataclasses.replace(cfg_b, num_samples=5), llm, tiny_tok)


def test_prefix_cache_equals_full_forward(tiny_lm, tiny_tok):
    from llm_trm.data import addition_problem, template_prefix
    from llm_trm.hidden import PrefixCache, shared_prefix_ids

    texts = [thinking_text(tiny_tok, addition_problem(a, b))[0] for a, b in ((3, 45), (12, 7), (99, 99))]
    pid = shared_prefix_ids(tiny_tok, texts, template_prefix(tiny_tok))
    assert len(pid) > 0
    enc = tiny_tok(texts, padding="longest", return_tensors="pt", add_special_tokens=False)
    full = tiny_lm.model(**enc).last_hidden_state
    part = PrefixCache(tiny_lm, pid).states(enc.input_ids[:, len(pid):], enc.attention_mask[:, len(pid):])
    m = enc.attention_mask[:, len(pid):, None]
    assert torch.allclose(full[:, len(pid):] * m, part * m, atol=1e-5)


def test_addition_split_is_disjoint_by_operand_pair():
    from llm_trm.data import addition_split

    tr, he = addition_split(300, 60, max_value=30, seed=1)
    key = lambda p: frozenset(int(v) for v in p.question.removeprefix("What is ").rstrip("?").split(" + "))  # noqa
    assert len(tr) == 300 and len(he) == 60 and not {key(p) for p in tr} & {key(p) for p in he}
    assert len({p.question for p in tr}) == 300  # each problem once
    with pytest.raises(UserError, match="max_value"):
        addition_split(1000, 10, max_value=9)


def test_pairs_for_texts_batch_matches_single(tiny_lm, tiny_tok):
    probs = make_problems(3, seed=1)
    texts = [thinking_text(tiny_tok, p) for p in probs]
    batch = pairs_for_texts(tiny_lm, tiny_tok, [t for t, _ in texts], [c for _, c in texts], 512)
    single = pairs_for_texts(tiny_lm, tiny_tok, [texts[2][0]], [texts[2][1]], 512)
    assert torch.allclose(batch[2]["hidden_post"], single[0]["hidden_post"], atol=1e-4)


def test_collate_masks():
    x, m = pad_collate([torch.ones(2, 4), torch.ones(3, 4)])
    assert x.shape == (2, 3, 4) and m.tolist() == [[1, 1, 0], [1, 1, 1]] and x[0, 2].abs().sum() == 0


def _trm(**kw):
    torch.manual_seed(0)
    return SequenceTRM(TRMConfig(**{**dict(d_model=8, n_layers=1, n_heads=2, n=2, T=3, dropout=0.0), **kw}))


def test_shapes_and_padding_invariance():
    m = _trm().eval()
    x, mask = pad_collate([torch.randn(3, 8), torch.randn(5, 8)])
    x_aug, pad, y, z = m.prepare(x, mask)
    y, z, pred, halt = m.deep_recursion(x_aug, y, z, pad)
    assert y.shape == (2, 6, 8) and pred.shape == (2, 8) and halt.shape == (2,)
    alone = m.predict(*pad_collate([x[0, :3]]), n_sup=2)
    assert torch.allclose(m.predict(x, mask, n_sup=2)[0], alone[0], atol=1e-5)


def test_only_last_recursion_carries_a_graph():
    m = _trm()
    x, mask = pad_collate([torch.randn(4, 8)])
    x_aug, pad, y0, z0 = m.prepare(x, mask)
    y0, z0 = y0.requires_grad_(), z0.requires_grad_()
    _, _, pred, _ = m.deep_recursion(x_aug, y0, z0, pad)
    assert torch.autograd.grad(pred.sum(), [y0, z0], allow_unused=True) == (None, None)  # T-1 no-grad first
    m1 = _trm(T=1)
    _, _, pred1, _ = m1.deep_recursion(x_aug, y0, z0, pad)
    assert all(g is not None for g in torch.autograd.grad(pred1.sum(), [y0, z0], allow_unused=True))
    # the graph holds exactly one latent recursion: (n + 1) net calls of 1 layer each
    calls = {"n": 0}
    m.net[0].register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + torch.is_grad_enabled()))
    m.deep_recursion(x_aug, y0, z0, pad)
    assert calls["n"] == m.cfg.n + 1


def test_ema_math():
    m = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(m, decay=0.9, warmup=False)
    old = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.shadow["weight"], 0.9 * old + 0.1 * (old + 1.0))
    assert torch.allclose(ema.copy_to(m).weight, ema.shadow["weight"]) and torch.equal(m.weight, old + 1.0)


def test_ema_warmup_follows_short_runs():
    m = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(m, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    for _ in range(120):
        ema.update(m)
    assert ema.current_decay() == pytest.approx(121 / 130) and ema.num_updates == 120
    assert EMA(m, decay=0.999, warmup=False).current_decay() == 0.999


def test_halt_target_detach_switch():
    pred = torch.randn(3, 4, requires_grad=True)
    target, logit = torch.randn(3, 4), torch.zeros(3, requires_grad=True)
    g_det = torch.autograd.grad(halt_loss(logit, pred, target, detach_target=True), pred, allow_unused=True)[0]
    g_bug = torch.autograd.grad(halt_loss(logit, pred, target, detach_target=False), pred)[0]
    assert g_det is None and g_bug.abs().sum() > 0


def _pairs(n=20, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(int(torch.randint(3, 7, (1,), generator=g)), d, generator=g) for _ in range(n)]
    ys = torch.stack([x.mean(0) for x in xs])
    return xs, ys


def test_supervision_steps_per_batch_and_detached_carry():
    cfg = Phase2Config(n_supervision_steps=3, batch_size=4, num_epochs=1, n_heads=2)
    m = _trm()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    xs, ys = _pairs(4)
    x_aug, pad, y, z = m.prepare(*pad_collate(xs))
    before = [p.detach().clone() for p in m.parameters()]
    y, z, metrics = supervision_step(m, opt, sched, None, x_aug, pad, y, z, ys, cfg, 0.7)
    assert not y.requires_grad and not z.requires_grad and sched.last_epoch == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))


def test_train_trm_steps_threshold_ema_and_best(tmp_path):
    xs, ys = _pairs(24)
    cfg = Phase2Config(n_supervision_steps=2, batch_size=8, num_epochs=3, n_heads=2, n_latent_steps=2,
                       n_deep_recursions=2, bce_halt_loss=True, learning_rate=1e-3, ema_decay=0.5)
    rows = []
    best = train_trm(cfg, xs[:20], ys[:20], xs[20:], ys[20:], tmp_path, log=lambda r, e: rows.append(r))
    assert rows[-1]["train/lr"] == pytest.approx(0.0, abs=1e-9)  # 3 batches x 2 steps x 3 epochs, cosine ends at 0
    assert rows[1]["epoch/halt_threshold"] == pytest.approx(0.95 * rows[1]["train/cosine_similarity"])
    ck = torch.load(tmp_path / "best.pt", weights_only=True)
    assert ck["loss"] == pytest.approx(min(r["eval/mse"] for r in rows)) and best["epoch"] == ck["epoch"]
    w = ck["trm_state_dict"]["halt_head.weight"]
    assert torch.equal(w, ck["ema_shadow"]["halt_head.weight"])  # EMA weights are the evaluation weights
    assert not torch.equal(w, ck["raw_state_dict"]["halt_head.weight"])


def test_baselines_ridge_recovers_linear_map():
    from llm_trm.phase2_eval import baseline_predictions, ridge_fit, ridge_predict

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 4, generator=g) for _ in range(60)]
    a = torch.randn(4, 4, generator=g)
    ys = torch.stack([x[-1] @ a for x in xs])
    w = ridge_fit(torch.stack([x[-1] for x in xs[:40]]), ys[:40], 1e-8)
    assert torch.allclose(ridge_predict(w, torch.stack([x[-1] for x in xs[40:]])), ys[40:], atol=1e-3)
    preds, info = baseline_predictions(xs[:30], ys[:30], xs[30:40], ys[30:40], xs[40:], mlp_params=500,
                                       mlp_epochs=5)
    assert torch.allclose(preds["ridge_last_state"], ys[40:], atol=1e-2)  # lambda picked on validation
    assert torch.allclose(preds["mean_target"][0], ys[:40].mean(0))
    assert set(preds) == {"mean_target", "last_context_state", "ridge_last_state", "ridge_all_states", "mlp"}
    assert abs(info["mlp"]["params"] - 500) < 100


def test_metrics_on_known_cases():
    from llm_trm.phase2_eval import per_example, point_metrics

    y = torch.randn(50, 6) + 10.0
    mu = y.mean(0)
    perfect = point_metrics(per_example(y.clone(), y, mu, torch.ones(50, dtype=torch.bool)))
    assert perfect["r2"] == pytest.approx(1.0) and perfect["centred_cosine"] == pytest.approx(1.0)
    assert perfect["relative_error"] == pytest.approx(0.0) and perfect["answer_accuracy"] == 1.0
    mean = point_metrics(per_example(mu.expand(50, -1).clone(), y, mu, torch.zeros(50, dtype=torch.bool)))
    assert mean["r2"] == pytest.approx(0.0, abs=1e-6) and mean["answer_accuracy"] == 0.0
    # raw cosine is saturated by the mean (about 0.99 here); the centred cosine is not
    assert torch.nn.functional.cosine_similarity(mu.expand(50, -1), y).mean() > 0.95


def test_output_scale_fix_learns_a_large_mean_target(tmp_path):
    """Synthetic targets with a large shared mean (RMS ~8.5): the fixed TRM explains them (R^2 > 0.9); the
    original setup (RMSNorm-pinned output, raw targets, weight decay on norms, no EMA warm-up) stays below 0."""
    from llm_trm.phase2 import predict
    from llm_trm.phase2_eval import per_example, point_metrics

    g = torch.Generator().manual_seed(0)
    d = 8
    protos, tk = torch.randn(4, 4, d, generator=g), torch.randn(4, d, generator=g) * 2
    ks = torch.randint(0, 4, (192,), generator=g).tolist()
    xs = [protos[k] + 0.3 * torch.randn(4, d, generator=g) for k in ks]  # 4 context patterns, noisy
    ys = tk[ks] + 8.0 + 0.1 * torch.randn(192, d, generator=g)  # pattern-specific target + a large mean
    fit_x, fit_y, te_x, te_y = xs[:160], ys[:160], xs[160:], ys[160:]
    base = dict(n_supervision_steps=2, batch_size=16, num_epochs=12, n_heads=2, n_latent_steps=1,
                n_deep_recursions=1, n_layers=1, learning_rate=3e-3, dropout=0.0, ema_decay=0.999)
    r2 = {}
    for name, kw in {"fixed": {}, "original": dict(standardize_targets=False, output_head=False, decay_norms=True,
                                                   ema_warmup=False, learning_rate=1e-4, max_positions=0)}.items():
        cfg = Phase2Config(**{**base, **kw})
        train_trm(cfg, fit_x, fit_y, te_x, te_y, tmp_path / name)
        from llm_trm.phase2 import load_trm

        pred = predict(load_trm(tmp_path / name / "best.pt"), te_x, cfg.n_supervision_steps)
        r2[name] = point_metrics(per_example(pred, te_y, fit_y.mean(0), torch.ones(len(te_y), dtype=torch.bool)))["r2"]
    assert r2["fixed"] > 0.9 and r2["original"] < 0, r2


def test_heads_must_divide_width():
    with pytest.raises(ValueError):
        SequenceTRM(TRMConfig(d_model=12, n_heads=8))


def test_phase2_run_end_to_end_on_tiny_model(tmp_path, tiny_lm, tiny_tok):
    from llm_trm import phase2
    from llm_trm.compression import DimensionCompressor
    from llm_trm.llm import LazyLLM

    llm = LazyLLM("tiny", torch.device("cpu"), tiny_lm)
    data = datagen(DatagenConfig(num_samples=16, batch_size=8, output_dir=str(tmp_path / "pairs"), model_name="tiny",
                                 heldout_fraction=0.25), llm, tiny_tok)
    torch.save({"compressor": DimensionCompressor(64, 8).state_dict()}, tmp_path / "c.pt")
    argv = ["--data_path", str(tmp_path / "pairs/hidden_pairs.pt"), "--compressor_checkpoint", str(tmp_path / "c.pt"),
            "--output_dir", str(tmp_path / "p2"), "--num_epochs", "2", "--n_heads", "2", "--n_latent_steps", "2",
            "--n_deep_recursions", "2", "--n_supervision_steps", "2", "--min_target_hit_rate", "0"]
    rep = phase2.run(phase2.parse_config(argv), lm_head_w=tiny_lm.lm_head.weight.detach())
    assert set(rep) == {"trm", "mean_target", "last_context_state", "ridge_last_state", "ridge_all_states", "mlp",
                        "oracle", "base_answer_only", "_meta"}
    assert rep["_meta"]["n_heldout"] == 4 and 0 <= rep["trm"]["answer_accuracy"] <= 1
    assert rep["oracle"]["r2"] == pytest.approx(1.0) and set(rep["trm"]) == {"centred_cosine", "r2", "relative_error",
                                                                             "answer_accuracy"}
    assert (tmp_path / "p2/best.pt").exists() and not list((tmp_path / "p2").glob("checkpoint_epoch*"))
    # a target that does not predict the answer is refused before any training
    data["target_hit_rate"] = 0.3
    torch.save(data, tmp_path / "weak.pt")
    with pytest.raises(UserError, match="only 30.0%"):
        phase2.run(phase2.parse_config(argv[:-2] + ["--data_path", str(tmp_path / "weak.pt")]))


def test_phase2_and_phase3_bad_inputs(tmp_path):
    from llm_trm import phase2, phase3

    with pytest.raises(UserError, match="does not exist"):
        phase2.run(phase2.parse_config(["--data_path", str(tmp_path / "nope.pt")]))
    (tmp_path / "text.pt").write_text("not a torch file")
    with pytest.raises(UserError, match="corrupt|not a readable"):
        phase2.run(phase2.parse_config(["--data_path", str(tmp_path / "text.pt")]))
    with pytest.raises(UserError, match="is a file|existing file"):
        phase2.run(phase2.parse_config(["--data_path", str(tmp_path / "text.pt"), "--output_dir",
                                        str(tmp_path / "text.pt" / "out")]))
    with pytest.raises(UserError, match="not found"):
        phase3.run(phase3.parse_config(["--compressor_checkpoint", str(tmp_path / "nope.pt")]))
    with pytest.raises(UserError, match="group_size"):
        phase3.parse_config(["--group_size", "1"])
    with pytest.raises(SystemExit):
        phase3.parse_config(["--scale_rewards", "token"])


def test_resume_equals_uninterrupted(tmp_path):
    xs, ys = _pairs(16)
    cfg = Phase2Config(n_supervision_steps=2, batch_size=8, num_epochs=3, n_heads=2, n_latent_steps=2,
                       n_deep_recursions=2, learning_rate=1e-3, ema_decay=0.5, resume=True)
    train_trm(cfg, xs[:12], ys[:12], xs[12:], ys[12:], tmp_path / "full")
    import llm_trm.phase2 as p2

    real = p2.regression_metrics
    calls = {"n": 0}

    def crash_in_epoch_2(*a):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # dies at the end of epoch 1, after epoch 0's last.pt
        return real(*a)

    p2.regression_metrics = crash_in_epoch_2
    try:
        with pytest.raises(KeyboardInterrupt):
            train_trm(cfg, xs[:12], ys[:12], xs[12:], ys[12:], tmp_path / "resumed")
    finally:
        p2.regression_metrics = real
    assert torch.load(tmp_path / "resumed/last.pt", weights_only=True)["epoch"] == 0
    train_trm(cfg, xs[:12], ys[:12], xs[12:], ys[12:], tmp_path / "resumed")
    a = torch.load(tmp_path / "full/last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["best"] == b["best"]
    with pytest.raises(UserError, match="different settings"):
        train_trm(dataclasses.replace(cfg, learning_rate=1e-2), xs[:12], ys[:12], xs[12:], ys[12:],
                  tmp_path / "resumed")
