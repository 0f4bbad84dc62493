"""Phase 3: GRPO on the TRM's reasoning latent, rewarded by answer correctness (spec 4.4 design A).

    python -m src.train.phase3_grpo --trm_checkpoint ./checkpoints/phase2/best.pt \\
        --compressor_checkpoint ./checkpoints/phase1/stage1b_best.pt      # original command (from llm_trm/)
    python -m llm_trm.phase3 --num_train 64 --num_eval 64 --num_epochs 3

The task is the phase-2 addition ("What is 37 + 45?", operands 0..99); evaluation prompts are held-out
problems whose operand pairs never occur in training (``llm_trm.data.addition_split`` with the datagen's seed
and held-out pool). The frozen LLM encodes the chat prompt; the compressed user-turn states go through the TRM;
its output mu(q) is the mean of a Gaussian policy over the latent. For each prompt G latents are sampled; each
gives the first answer token as argmax lm_head(W^T a) after the answer-only prompt (empty think block, then
"The answer is "; the only place the TRM enters the LLM, as in [LT]'s inference branch), and greedy decoding
continues.
Reward 1 when the extracted answer is right. The LLM is frozen and decoding is greedy, so the continuation
for a (prompt, first token) pair is memoised. Trainable: the TRM only (the compressor W and the LLM stay
frozen: in this design the policy's log-probability does not depend on W).
The report compares base no-think, base with a CoT prompt, compressor round trip, phase-2 TRM, phase-3 TRM.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from llm_trm.checks import cli_entry, require_positive
from llm_trm.data import addition_split, answer_prompt, chat_prompt, template_prefix
from llm_trm.grpo import extract_answer, gaussian_logprob, group_advantages, grpo_loss, is_correct
from llm_trm.llm import LazyLLM, Tracker, pick_run_device
from llm_trm.phase1 import load_compressor
from llm_trm.phase2 import load_trm
from shared_utils.errors import UserError
from shared_utils.runs import RunDir, atomic_torch_save, atomic_write_json, seed_everything

COT_INSTRUCTION = "Think step by step, then give the final answer."


@dataclass
class Phase3Config:
    trm_checkpoint: str = "./checkpoints/phase2/best.pt"
    compressor_checkpoint: str = "./checkpoints/phase1/stage1b_best.pt"  # [LT]'s default "best.pt" never existed
    model_name: str = "smollm2-135m"
    output_dir: str = "./checkpoints/phase3"
    batch_size: int = 4  # prompts per GRPO step
    learning_rate: float = 1e-5
    num_epochs: int = 10
    group_size: int = 8  # G
    kl_coef: float = 0.1  # beta
    epsilon: float = 0.2
    epsilon_high: float | None = None
    num_iterations: int = 1  # mu: updates per rollout batch (1 -> ratio == 1)
    scale_rewards: str = "group"
    reward: str = "first_digit"  # first_digit: the token the latent decides | answer: the whole greedy answer
    sigma_scale: float = 0.1  # sigma = sigma_scale * RMS of the phase-2 means on the training prompts
    n_supervision_steps: int | None = None  # default: the phase-2 value
    num_train: int = 256
    num_eval: int = 200  # held-out prompts (operand pairs disjoint from phase-2 and phase-3 training)
    heldout_pool: int = 500  # the datagen's held-out pairs (same seed and max_value: the same problems)
    max_value: int = 99
    eval_every: int = 4  # GRPO steps between held-out accuracy points of the learning curve
    max_new_tokens: int = 3  # forced first token + 2: enough for sums up to 198
    cot_max_new_tokens: int = 64
    seed: int = 42
    device: str = "auto"
    use_wandb: bool = False
    wandb_project: str = "llm-trm-phase3"


class Decoder:
    """Greedy continuations from the frozen LLM, memoised per (prompt, forced first token, length).

    Missing continuations are generated together in left-padded batches (one ``generate`` call per batch).
    """

    def __init__(self, llm, tokenizer, max_new_tokens: int, batch_size: int = 32):
        self.llm, self.tok, self.max_new, self.batch_size = llm, tokenizer, max_new_tokens, batch_size
        self.memo: dict[tuple, str] = {}

    def _key(self, prompt_ids, first, max_new):
        return (tuple(prompt_ids), first, max_new or self.max_new)

    @torch.no_grad()
    def _generate(self, keys: list[tuple]) -> None:
        dev = next(self.llm.parameters()).device
        pad = self.tok.pad_token_id
        for s in range(0, len(keys), self.batch_size):
            chunk = keys[s: s + self.batch_size]
            seqs = [list(p) + ([f] if f is not None else []) for p, f, _ in chunk]
            width = max(len(x) for x in seqs)
            ids = torch.tensor([[pad] * (width - len(x)) + x for x in seqs], device=dev)
            att = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in seqs], device=dev)
            n = max(m - (f is not None) for _, f, m in chunk)
            out = self.llm.generate(ids, attention_mask=att, max_new_tokens=max(n, 1), do_sample=False,
                                    pad_token_id=pad) if n > 0 else ids
            for (p, f, m), row in zip(chunk, out):
                new = row[width: width + m - (f is not None)].tolist()
                self.memo[(p, f, m)] = self.tok.decode(([f] if f is not None else []) + new,
                                                       skip_special_tokens=True)

    def complete_many(self, requests: list[tuple]) -> list[str]:
        """requests: (prompt_ids, first_token or None, max_new or None) -> decoded completions."""
        keys = [self._key(*r) for r in requests]
        missing = sorted({k for k in keys if k not in self.memo}, key=lambda k: len(k[0]))
        if missing:
            self._generate(missing)
        return [self.memo[k] for k in keys]

    def complete(self, prompt_ids: list[int], first: int | None = None, max_new: int | None = None) -> str:
        return self.complete_many([(prompt_ids, first, max_new)])[0]


@torch.no_grad()
def encode_prompts(llm, tokenizer, comp, problems: list, batch_size: int = 32) -> dict:
    """Per problem: ids of the answer-only prompt (decoding starts there), the compressed user-turn states
    [L_i, D'] (after the chat template's shared prefix, before ``<think>``: the phase-2 context) and the raw
    last state of the answer-only prompt [D] (for the compressor round trip)."""
    from llm_trm.hidden import PrefixCache, shared_prefix_ids

    texts = [answer_prompt(tokenizer, p) for p in problems]
    prefix = PrefixCache(llm, shared_prefix_ids(tokenizer, texts[:8], template_prefix(tokenizer)))
    n_pre = len(prefix)
    ids, ctx, last = [], [], []
    for s in range(0, len(texts), batch_size):
        chunk = problems[s: s + batch_size]
        enc = tokenizer(texts[s: s + batch_size], padding="longest", return_tensors="pt", add_special_tokens=False)
        dev = next(llm.parameters()).device
        h = prefix.states(enc.input_ids[:, n_pre:].to(dev), enc.attention_mask[:, n_pre:].to(dev)).cpu()
        for i, p in enumerate(chunk):
            n = int(enc.attention_mask[i].sum())
            n_chat = len(tokenizer(chat_prompt(tokenizer, p.question), add_special_tokens=False).input_ids)
            ids.append(enc.input_ids[i, :n].tolist())
            ctx.append(comp(h[i, : n_chat - n_pre]))
            last.append(h[i, n - 1 - n_pre])
    return {"ids": ids, "ctx": ctx, "last": torch.stack(last)}


def first_tokens(latents: torch.Tensor, comp, lm_head_w: torch.Tensor) -> torch.Tensor:
    """argmax lm_head(W^T a) for latents [..., D']."""
    return (comp.decompress(latents) @ lm_head_w.T).argmax(-1)


def policy_means(trm, ctx: list[torch.Tensor], n_sup: int, grad: bool) -> torch.Tensor:
    from llm_trm.phase2 import pad_collate

    x, mask = pad_collate(ctx)
    return trm.predict_with_grad(x, mask, n_sup) if grad else trm.predict(x, mask, n_sup)


def score(text: str, gold: str, kind: str = "answer") -> float:
    """answer: the extracted answer is right; first_digit: its first digit is right (the part of the answer that
    the latent decides: it only sets the first answer token, the frozen LLM writes the rest)."""
    pred = extract_answer(text)
    if kind == "first_digit":
        return float(bool(pred) and pred.lstrip("-")[:1] == gold.lstrip("-")[:1])
    return float(is_correct(pred, gold))


def rewards_for(decoder, prompts: list[list[int]], toks: torch.Tensor, golds: list[str],
                kind: str = "answer") -> torch.Tensor:
    """toks [P, G] forced first tokens -> rewards [P, G] in {0, 1}."""
    texts = decoder.complete_many([(p, t, None) for i, p in enumerate(prompts) for t in toks[i].tolist()])
    g = toks.shape[1]
    return torch.tensor([score(t, golds[k // g], kind) for k, t in enumerate(texts)]).view(toks.shape)


def correct(decoder, prompts, golds, firsts=None, max_new=None, kind: str = "answer") -> list[float]:
    """Per-prompt 0/1 correctness of greedy decoding (first token forced when ``firsts`` is given)."""
    texts = decoder.complete_many([(p, None if firsts is None else int(firsts[i]), max_new)
                                   for i, p in enumerate(prompts)])
    return [score(t, g, kind) for t, g in zip(texts, golds)]


def accuracy(decoder, prompts, golds, firsts=None, max_new=None, kind: str = "answer") -> float:
    return sum(correct(decoder, prompts, golds, firsts, max_new, kind)) / len(golds)


def grpo_step(policy, ref_mu, ctx, prompts, golds, comp, head, decoder, opt, cfg, sigma, n_sup):
    """Sample G latents per prompt, score them, and take ``num_iterations`` clipped-surrogate steps."""
    t0 = time.time()
    with torch.no_grad():
        mu0 = policy_means(policy, ctx, n_sup, grad=False)
        acts = mu0.unsqueeze(1) + sigma * torch.randn(len(ctx), cfg.group_size, mu0.shape[-1])
        toks = first_tokens(acts, comp, head)
        old_logp = gaussian_logprob(acts, mu0.unsqueeze(1), sigma)
    rewards = rewards_for(decoder, prompts, toks, golds, kind=cfg.reward)
    adv, zero_std = group_advantages(rewards, cfg.scale_rewards)
    for _ in range(cfg.num_iterations):
        mu = policy_means(policy, ctx, n_sup, grad=True)
        loss, stats = grpo_loss(mu, acts, old_logp, adv, sigma, ref_mu, cfg.kl_coef, cfg.epsilon, cfg.epsilon_high)
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = mu0.shape[-1]
    lengths = [len(decoder.tok(decoder.complete(p, t)).input_ids) for i, p in enumerate(prompts)
               for t in toks[i].tolist()]
    return {"loss": loss.item(), "reward": rewards.mean().item(), "reward_std": rewards.std(1).mean().item(),
            "frac_reward_zero_std": zero_std, **stats,
            "entropy": 0.5 * d * (1 + math.log(2 * math.pi * sigma**2)),
            "completions/mean_length": sum(lengths) / len(lengths), "completions/min_length": min(lengths),
            "completions/max_length": max(lengths), "step_time": time.time() - t0}


def run(cfg: Phase3Config, llm: LazyLLM | None = None, tokenizer=None) -> dict:
    from llm_trm.checks import check_output_path, load_torch_file
    from shared_utils.models import load_tokenizer

    out = check_output_path(cfg.output_dir, "--output_dir")
    seed_everything(cfg.seed)
    comp = load_compressor(cfg.compressor_checkpoint)
    ref = load_trm(cfg.trm_checkpoint)
    policy = load_trm(cfg.trm_checkpoint)
    ck2 = load_torch_file(cfg.trm_checkpoint, "TRM checkpoint")
    n_sup = cfg.n_supervision_steps or ck2["config"]["n_supervision_steps"]
    if ref.cfg.d_model != comp.d_compressed:
        raise UserError(f"TRM width {ref.cfg.d_model} != compressor D' {comp.d_compressed}")
    train_p, pool = addition_split(cfg.num_train, max(cfg.heldout_pool, cfg.num_eval), cfg.max_value, cfg.seed)
    eval_p = pool[: cfg.num_eval]
    tokenizer = tokenizer or load_tokenizer(cfg.model_name)
    model = (llm or LazyLLM(cfg.model_name, pick_run_device(cfg.device))).get()
    head = model.get_output_embeddings().weight.detach().float().cpu()
    tr = encode_prompts(model, tokenizer, comp, train_p)
    ev = encode_prompts(model, tokenizer, comp, eval_p)
    tr_gold, ev_gold = [str(p.answer) for p in train_p], [str(p.answer) for p in eval_p]
    ref_mu_tr = policy_means(ref, tr["ctx"], n_sup, grad=False)
    rms = ref_mu_tr.pow(2).mean().sqrt().item()
    sigma = cfg.sigma_scale * (rms if rms > 0 else ref.y_std.pow(2).mean().sqrt().item())  # untrained TRM: mu = 0
    decoder = Decoder(model, tokenizer, cfg.max_new_tokens)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.99), weight_decay=0.0)
    run_dir = RunDir(out)
    run_dir.write_config(asdict(cfg))
    run_dir.write_meta(seed=cfg.seed, sigma=sigma)
    tracker = Tracker.create(cfg.use_wandb, cfg.wandb_project, f"phase3_grpo_d{comp.d_compressed}", asdict(cfg))

    def heldout_acc(net) -> dict:
        firsts = first_tokens(policy_means(net, ev["ctx"], n_sup, False), comp, head)
        return {k: accuracy(decoder, ev["ids"], ev_gold, firsts, kind=k) for k in ("answer", "first_digit")}

    step, g = 0, torch.Generator().manual_seed(cfg.seed)
    curve = [{"step": 0, "heldout_accuracy": heldout_acc(policy)}]
    policy.eval()  # dropout off: the ratio must compare the same deterministic mean
    for _epoch in tqdm(range(cfg.num_epochs), desc="phase-3 GRPO epochs", leave=False):
        perm = torch.randperm(cfg.num_train, generator=g).tolist()
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s: s + cfg.batch_size]
            m = grpo_step(policy, ref_mu_tr[idx], [tr["ctx"][i] for i in idx], [tr["ids"][i] for i in idx],
                          [tr_gold[i] for i in idx], comp, head, decoder, opt, cfg, sigma, n_sup)
            step += 1
            if step % cfg.eval_every == 0:
                acc = heldout_acc(policy)
                m.update({f"eval/heldout_{k}_accuracy": v for k, v in acc.items()})
                curve.append({"step": step, "heldout_accuracy": acc})
            run_dir.log(step, **m)
            tracker.log(m, step)
    if curve[-1]["step"] != step:
        curve.append({"step": step, "heldout_accuracy": heldout_acc(policy)})
    tracker.finish()
    atomic_torch_save({"trm_state_dict": policy.state_dict(), "trm_config": asdict(policy.cfg), "config": asdict(cfg),
                       "sigma": sigma, "compressor": comp.state_dict()}, out / "trm_grpo.pt")
    per = evaluate_all(cfg, decoder, tokenizer, comp, head, ref, policy, ev, ev_gold, eval_p, n_sup)
    report = {k: sum(v) / len(v) for k, v in per.items()}  # keys: <system> (answer) and first_digit/<system>
    report["_meta"] = {"sigma": sigma, "steps": step, "num_train": cfg.num_train, "num_eval": cfg.num_eval,
                       "max_value": cfg.max_value, "group_size": cfg.group_size, "curve": curve,
                       "rewards": [r.get("reward") for r in run_dir.read_metrics()]}
    atomic_write_json(out / "eval.json", report)
    atomic_write_json(out / "eval_examples.json", per)
    for k, v in report.items():
        if not k.startswith("_"):
            print(f"[phase3] accuracy {k:22s} {v:.3f}", flush=True)
    return report


@torch.no_grad()
def evaluate_all(cfg, decoder, tokenizer, comp, head, ref, policy, ev, golds, problems, n_sup) -> dict:
    """Per-prompt held-out correctness of the five systems of [LT] scripts/benchmark.py (greedy decoding):
    ``<system>`` = whole answer right, ``first_digit/<system>`` = its first digit right."""
    cot_ids = [tokenizer(chat_prompt(tokenizer, f"{p.question} {COT_INSTRUCTION}"), add_special_tokens=False).input_ids
               for p in problems]
    systems = {"base_answer_only": (ev["ids"], None, None), "base_cot_prompt": (cot_ids, None, cfg.cot_max_new_tokens),
               "compressor_round_trip": (ev["ids"], (comp.reconstruct(ev["last"]) @ head.T).argmax(-1), None),
               "phase2_trm": (ev["ids"], first_tokens(policy_means(ref, ev["ctx"], n_sup, False), comp, head), None),
               "phase3_trm": (ev["ids"], first_tokens(policy_means(policy, ev["ctx"], n_sup, False), comp, head),
                              None)}
    out = {}
    for name, (ids, firsts, max_new) in systems.items():
        out[name] = correct(decoder, ids, golds, firsts, max_new, "answer")
        out[f"first_digit/{name}"] = correct(decoder, ids, golds, firsts, max_new, "first_digit")
    return out


def parse_config(argv=None) -> Phase3Config:
    c = Phase3Config()
    p = argparse.ArgumentParser(prog="phase3_grpo", description=__doc__.split("\n")[0])
    for k in ("trm_checkpoint", "compressor_checkpoint", "model_name", "output_dir", "device", "wandb_project"):
        p.add_argument(f"--{k}", default=getattr(c, k))
    for k in ("batch_size", "num_epochs", "group_size", "num_iterations", "num_train", "num_eval", "max_value",
              "max_new_tokens", "cot_max_new_tokens", "seed", "heldout_pool", "eval_every"):
        p.add_argument(f"--{k}", type=int, default=getattr(c, k))
    for k in ("learning_rate", "kl_coef", "epsilon", "sigma_scale"):
        p.add_argument(f"--{k}", type=float, default=getattr(c, k))
    p.add_argument("--epsilon_high", type=float, default=None)
    p.add_argument("--n_supervision_steps", type=int, default=None)
    p.add_argument("--scale_rewards", choices=["group", "batch", "none"], default=c.scale_rewards)
    p.add_argument("--reward", choices=["first_digit", "answer"], default=c.reward)
    p.add_argument("--use_wandb", action="store_true")
    cfg = Phase3Config(**vars(p.parse_args(argv)))
    require_positive(cfg, ("batch_size", "num_epochs", "num_iterations", "num_train", "num_eval", "max_value",
                           "max_new_tokens", "eval_every"), ("learning_rate", "sigma_scale"))
    if cfg.group_size < 2:
        raise UserError(f"invalid --group_size {cfg.group_size} (>= 2: GRPO needs a group)")
    return cfg


main = cli_entry(parse_config, run)


if __name__ == "__main__":
    main()
