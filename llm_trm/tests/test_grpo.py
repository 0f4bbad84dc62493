"""Phase-3 GRPO math against hand computation, and two GRPO steps on the tiny model:
python -m pytest tests/test_grpo.py -q"""

import dataclasses
import math

import pytest
import torch

from llm_trm.grpo import (
    clipped_surrogate,
    extract_answer,
    gaussian_kl,
    gaussian_logprob,
    group_advantages,
    grpo_loss,
    is_correct,
    k3_kl,
)


def test_advantages_match_trl_formula():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    adv, zero = group_advantages(r)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased
    assert torch.allclose(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    assert torch.equal(adv[1], torch.zeros(4)) and zero == 0.5
    assert torch.allclose(group_advantages(r, "none")[0][0], torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_ratio_one_gradient_is_advantage_times_score():
    torch.manual_seed(0)
    mu = torch.randn(2, 3, requires_grad=True)
    acts = mu.detach().unsqueeze(1) + 0.5 * torch.randn(2, 4, 3)
    adv = torch.randn(2, 4)
    old = gaussian_logprob(acts, mu.detach().unsqueeze(1), 0.5)
    loss, _ = grpo_loss(mu, acts, old, adv, 0.5)
    (g,) = torch.autograd.grad(loss, mu)
    manual = -(adv.unsqueeze(-1) * (acts - mu.detach().unsqueeze(1)) / 0.25).sum(1) / 8
    assert torch.allclose(g, manual, atol=1e-5)


def test_clipping_turns_on_beyond_one_plus_eps():
    logp = torch.tensor([math.log(1.5), math.log(1.5), math.log(1.1)], requires_grad=True)
    old = torch.zeros(3)
    adv = torch.tensor([1.0, -1.0, 1.0])
    loss, stats = clipped_surrogate(logp, old, adv, 0.2)
    assert torch.allclose(loss, torch.tensor([-1.2, 1.5, -1.1]), atol=1e-6)
    (g,) = torch.autograd.grad(loss.sum(), logp)
    assert g[0] == 0 and g[1] != 0 and g[2] != 0  # clipped positive advantage has no gradient
    assert stats["clip_ratio/high_mean"] == pytest.approx(1 / 3) and stats["clip_ratio/low_mean"] == 0


def test_kl_terms():
    mu = torch.randn(4, 5)
    assert torch.equal(gaussian_kl(mu, mu, 0.3), torch.zeros(4))
    assert gaussian_kl(mu, mu + 0.1, 0.5).allclose(torch.full((4,), 5 * 0.01 / 0.5))
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


@pytest.mark.parametrize("text,gold", [("The answer is 42.", "42"), ("So the total = 1,234", "1234"),
                                       ("#### 56", "56"), ("Therefore, 2 + 2 = 4", "4"),
                                       ("The result is -5.5", "-5.5")])
def test_repo_extract_answer_cases(text, gold):
    assert extract_answer(text) == gold and is_correct(extract_answer(text), gold)


def test_extract_answer_edges():
    assert extract_answer("<think>7</think> 12") == "12" and extract_answer("no number") is None
    assert not is_correct(None, "3") and is_correct("3.0000000001", "3")


def test_grpo_moves_policy_towards_rewarded_actions():
    torch.manual_seed(0)
    mu = torch.zeros(1, 2, requires_grad=True)
    opt = torch.optim.SGD([mu], lr=0.05)
    for _ in range(30):
        acts = mu.detach().unsqueeze(1) + 0.5 * torch.randn(1, 16, 2)
        reward = (acts[..., 0] > 0).float()  # the first coordinate's sign is what pays
        adv, _ = group_advantages(reward)
        old = gaussian_logprob(acts, mu.detach().unsqueeze(1), 0.5)
        loss, _ = grpo_loss(mu, acts, old, adv, 0.5, mu_ref=torch.zeros(1, 2), beta=0.01)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mu[0, 0] > 0.5 and abs(mu[0, 1]) < mu[0, 0] / 2


def test_two_grpo_steps_change_only_the_trm(tmp_path, tiny_lm, tiny_tok, monkeypatch):
    import llm_trm.phase3 as p3
    from llm_trm.compression import DimensionCompressor
    from llm_trm.llm import LazyLLM
    from llm_trm.phase2 import Phase2Config, build_trm

    torch.manual_seed(0)
    comp = DimensionCompressor(64, 8)
    torch.save({"compressor": comp.state_dict()}, tmp_path / "c.pt")
    trm = build_trm(dataclasses.replace(Phase2Config(), n_heads=2, n_latent_steps=2, n_deep_recursions=2), 8)
    torch.save({"trm_state_dict": trm.state_dict(), "trm_config": dataclasses.asdict(trm.cfg),
                "config": {"n_supervision_steps": 2}}, tmp_path / "t.pt")
    llm_before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    # a random tiny LM is never right: reward even first tokens so that groups have variance
    monkeypatch.setattr(p3, "rewards_for", lambda dec, prompts, toks, golds, **kw: (toks % 2 == 0).float())
    cfg = p3.Phase3Config(trm_checkpoint=str(tmp_path / "t.pt"), compressor_checkpoint=str(tmp_path / "c.pt"),
                          output_dir=str(tmp_path / "out"), num_train=4, batch_size=2, num_epochs=1, group_size=4,
                          num_eval=2, max_new_tokens=3, cot_max_new_tokens=3, sigma_scale=1.0, learning_rate=1e-2,
                          heldout_pool=4, eval_every=1)
    report = p3.run(cfg, LazyLLM("tiny", torch.device("cpu"), tiny_lm), tiny_tok)
    new = torch.load(tmp_path / "out/trm_grpo.pt", weights_only=True)
    changed = [k for k, v in new["trm_state_dict"].items() if not torch.equal(v, trm.state_dict()[k])]
    assert changed
    assert torch.equal(new["compressor"]["compress.weight"], comp.compress.weight)
    assert all(torch.equal(v, llm_before[k]) for k, v in tiny_lm.state_dict().items())
    assert len(report["_meta"]["curve"]) == 3  # step 0 and after each step
    systems = {"base_answer_only", "base_cot_prompt", "compressor_round_trip", "phase2_trm", "phase3_trm"}
    assert set(report) == systems | {f"first_digit/{k}" for k in systems} | {"_meta"}
    assert report["_meta"]["steps"] == 2
    rows = [r for r in (tmp_path / "out/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "frac_reward_zero_std" in rows[0] and "clip_ratio/region_mean" in rows[0]


def test_score_kinds():
    from llm_trm.phase3 import score

    assert score("82.", "82") == 1.0 and score("81", "82") == 0.0
    assert score("81", "82", "first_digit") == 1.0 and score("91", "82", "first_digit") == 0.0
    assert score("no number", "82", "first_digit") == 0.0


def test_batched_decoder_matches_single_generate(tiny_lm, tiny_tok):
    from llm_trm.phase3 import Decoder

    prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]
    dec = Decoder(tiny_lm, tiny_tok, max_new_tokens=4)
    batched = dec.complete_many([(prompts[0], 3, None), (prompts[1], None, None), (prompts[1], 3, 6)])
    for (p, f, m), got in zip([(prompts[0], 3, 4), (prompts[1], None, 4), (prompts[1], 3, 6)], batched):
        ids = torch.tensor([p + ([f] if f is not None else [])])
        out = tiny_lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=m - (f is not None),
                               do_sample=False, pad_token_id=256)
        assert got == tiny_tok.decode(([f] if f is not None else []) + out[0, ids.shape[1]:].tolist(),
                                      skip_special_tokens=True)
