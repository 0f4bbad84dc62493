"""Plan generation for GSM8K: prompts, cleaning, record building and three backends.

Backends: `vllm` (GPU, optional import), `hf` (transformers generate; default model is the embedded
SmolLM2-135M-Instruct, prompt built with the tokenizer's own chat template) and `rule` (our addition: one
abstract sentence per calculator annotation, keyed by its main operator; no digits by construction).

python scripts/data_prep/generate_gsm8k_plans.py --backend rule --split train --num_examples 5 --output_path P
"""

from __future__ import annotations

import re

from shared_utils.answers import calculator_annotations, split_solution
from shared_utils.errors import UserError

README_RULES = """IMPORTANT RULES:
1. The plan should contain ONLY logical steps and operations
2. Do NOT include specific numbers or calculations
3. Use abstract terms like "initial quantity", "given amount"
4. Keep it concise (2-4 sentences)
5. Focus on reasoning structure, not execution"""

FORK_RULES = """Rules:
- Describe WHAT operations to do, in abstract terms.
- Do NOT use specific numbers; say "initial value", "given ratio", "remaining amount".
- Do NOT compute the final answer.
- Write 3-5 short sentences."""

SYSTEM = "You extract the abstract reasoning plan of a math word problem solution."
EXAMPLE_Q = "Janet has 5 apples. Bob gives her 3 more, then she eats 2. How many apples does she have?"
EXAMPLE_S = "5+3=<<5+3=8>>8\n8-2=<<8-2=6>>6"
EXAMPLE_P = ("Add the received amount to the initial quantity. Subtract the amount eaten from the total. "
             "State the final result.")
FALLBACK_PLAN = "Analyze the problem statement. Perform necessary arithmetic operations. State the final result."
BOILERPLATE = re.compile(r"^\s*(here is the abstract reasoning plan|here is the extracted plan|here is the plan"
                         r"|the plan is|abstract reasoning plan|plan)\s*:\s*", re.IGNORECASE)


# `fewshot`: three worked examples of abstract plans (the README prompt's intent), no numbers in any answer
FEW_SHOT = (
    (EXAMPLE_Q, EXAMPLE_S, EXAMPLE_P),
    ("A shirt costs $20 and is on sale for 25% off. What is the sale price?", "20*0.25=<<20*0.25=5>>5\n20-5=<<20-5=15>>15",
     "Compute the discount as a share of the original price. Subtract the discount from the price. State the sale price."),
    ("Tom reads 12 pages a day for 3 days and then 10 more pages. How many pages did he read?",
     "12*3=<<12*3=36>>36\n36+10=<<36+10=46>>46",
     "Multiply the daily pages by the number of days. Add the extra pages. State the total."),
)


def chat_messages(question: str, solution: str, style: str = "readme") -> list[dict]:
    rules = FORK_RULES if style == "fork" else README_RULES
    shots = FEW_SHOT if style == "fewshot" else FEW_SHOT[:1]
    msgs = [{"role": "system", "content": f"{SYSTEM}\n{rules}"}]
    for q, s, p in shots:
        msgs += [{"role": "user", "content": f"Question: {q}\nSolution: {s}\nExtract the abstract reasoning plan:"},
                 {"role": "assistant", "content": p}]
    msgs.append({"role": "user", "content": f"Question: {question}\nSolution: {solution}\nExtract the abstract reasoning plan:"})
    return msgs


def digit_token_ids(tok) -> list[list[int]]:
    """Vocabulary ids whose text contains a digit (for `suppress_digits` decoding: plans without numbers)."""
    return [[i] for t, i in tok.get_vocab().items() if any(c.isdigit() for c in tok.convert_tokens_to_string([t]))]


def clean_plan(text: str) -> str:
    """Strip boilerplate prefixes and quotes, join lines; too short -> the generic fallback plan."""
    t = str(text).strip()
    for _ in range(3):
        t = BOILERPLATE.sub("", t).strip()
    t = t.strip("\"'` ").replace("\r", " ").replace("\n", " ")
    t = re.sub(r"\s+", " ", t).strip()
    return t if len(t) >= 5 else FALLBACK_PLAN


def main_operator(expr: str) -> str:
    """Lowest-precedence top-level operator of the left side of an annotation (`48/2=24` -> `/`)."""
    lhs = expr.split("=")[0]
    depth, last_add, last_mul = 0, None, None
    for i, ch in enumerate(lhs):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch in "+-" and i > 0 and lhs[i - 1] not in "*/+-(eE":
            last_add = ch
        elif depth == 0 and ch in "*/":
            last_mul = ch
    return last_add or last_mul or "="


RULE_SENTENCES = {
    "+": "add the relevant quantities together",
    "-": "find the difference between the two quantities",
    "*": "multiply the quantity by the given factor",
    "/": "divide the quantity by the given amount",
    "=": "use the given quantity directly",
}
ORDINALS = ("First", "Then", "Next", "After that")


def rule_plan(solution: str) -> str:
    """Deterministic abstract plan: one sentence per `<<...>>` annotation, then "State the final result."."""
    exprs = calculator_annotations(solution)
    if not exprs:
        return FALLBACK_PLAN
    parts = []
    for i, e in enumerate(exprs):
        lead = ORDINALS[min(i, len(ORDINALS) - 1)]
        parts.append(f"{lead}, {RULE_SENTENCES[main_operator(e)]}.")
    return " ".join(parts + ["State the final result."])


def build_record(split: str, idx: int, row: dict, plan: str) -> dict:
    execution, answer = split_solution(row["answer"])
    return {"id": f"gsm8k_{split}_{idx}", "question": row["question"], "plan": clean_plan(plan),
            "execution": execution, "answer_numerical": answer}


class RuleBackend:
    name = "rule"

    def generate(self, rows: list[dict]) -> list[str]:
        return [rule_plan(r["answer"]) for r in rows]


class HFBackend:
    """transformers generation with the model's own chat template (greedy when temperature == 0)."""

    name = "hf"

    def __init__(self, model: str, temperature: float, top_p: float, max_tokens: int, style: str, seed: int = 0,
                 dtype=None, device=None, suppress_digits: bool = False):
        import torch

        from shared_utils.models import load_causal_lm, load_tokenizer

        self.torch = torch
        self.tok = load_tokenizer(model, flag="--model")
        self.tok.padding_side = "left"
        self.model = load_causal_lm(model, dtype=dtype, device=device, flag="--model").eval()
        self.temperature, self.top_p, self.max_tokens, self.style, self.seed = temperature, top_p, max_tokens, style, seed
        self.bad_words = digit_token_ids(self.tok) if suppress_digits else None

    def generate(self, rows: list[dict]) -> list[str]:
        prompts = [self.tok.apply_chat_template(chat_messages(r["question"], split_solution(r["answer"])[0], self.style),
                                                tokenize=False, add_generation_prompt=True) for r in rows]
        enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        self.torch.manual_seed(self.seed)
        kw = {"do_sample": self.temperature > 0, "max_new_tokens": self.max_tokens, "pad_token_id": self.tok.pad_token_id}
        if self.temperature > 0:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        if self.bad_words:
            kw["bad_words_ids"] = self.bad_words
        with self.torch.no_grad():
            out = self.model.generate(**enc, **kw)
        return self.tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


class VLLMBackend:
    """vLLM as in the fork (bfloat16, max_model_len 4096, gpu_memory_utilization 0.9); needs a GPU."""

    name = "vllm"

    def __init__(self, model: str, temperature: float, top_p: float, max_tokens: int, style: str,
                 tensor_parallel_size: int = 1, seed: int = 0):
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise UserError("vLLM is not installed (pip install vllm, GPU only); use --backend hf or --backend rule") from None
        from shared_utils.models import resolve_model_path

        self.llm = LLM(model=resolve_model_path(model), tensor_parallel_size=tensor_parallel_size, dtype="bfloat16",
                       max_model_len=4096, gpu_memory_utilization=0.9, seed=seed)
        self.tok = self.llm.get_tokenizer()
        self.params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                     stop=["Question:", "Solution:"])
        self.style = style

    def generate(self, rows: list[dict]) -> list[str]:
        prompts = [self.tok.apply_chat_template(chat_messages(r["question"], split_solution(r["answer"])[0], self.style),
                                                tokenize=False, add_generation_prompt=True) for r in rows]
        return [o.outputs[0].text for o in self.llm.generate(prompts, self.params)]


def make_backend(name: str, model: str, temperature: float, top_p: float, max_tokens: int, style: str,
                 tensor_parallel_size: int = 1, seed: int = 0, suppress_digits: bool = False):
    if name == "rule":
        return RuleBackend()
    if name == "hf":
        return HFBackend(model, temperature, top_p, max_tokens, style, seed, suppress_digits=suppress_digits)
    if name == "vllm":
        return VLLMBackend(model, temperature, top_p, max_tokens, style, tensor_parallel_size, seed)
    raise UserError(f"--backend must be vllm, hf or rule, got {name}")
