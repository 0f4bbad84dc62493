"""Steps shared by both training modes: load, data, block selection, assembly and saving the result.

The output directory is a plain Hugging Face checkpoint (config with ``num_hidden_layers = L - n``, safetensors,
tokenizer: the original saved no tokenizer and ignored ``output_dir``) plus ``streamline.json`` with the removed
block, every candidate's score, data sizes, seed and losses. It is written to a temporary sibling directory and
renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llm_streamline import data as D
from llm_streamline.adapters import get_adapter
from llm_streamline.lightweight import FFN
from llm_streamline.selection import check_interval, score_blocks
from llm_streamline.surgery import build_pruned_model, count_params, streamline_keep
from shared_utils.errors import UserError
from shared_utils.models import load_causal_lm, load_tokenizer, pick_device
from shared_utils.runs import atomic_dir, atomic_write_json, seed_everything

RECORD = "streamline.json"


@dataclass
class Context:
    """What both modes need after setup: model, tokenizer, data blocks, the selected block."""

    model: object
    tokenizer: object
    device: torch.device
    train_blocks: torch.Tensor
    test_blocks: torch.Tensor
    selection: dict
    record: dict = field(default_factory=dict)

    @property
    def best(self) -> int:
        return self.selection["best_layer"]


def check_output_dir(path: str) -> Path:
    """Fail before any heavy work when the output directory cannot be written."""
    out = Path(path).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out.parent, prefix=".probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise UserError(f"output_dir {out} is not writable ({exc.strerror or exc})") from None
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {out} exists and is not a directory")
    return out


def load_data(args, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) token blocks of ``seq_len`` from ``data_path`` (see :mod:`llm_streamline.data`)."""
    if args.data_path in ("", D.SLIMPAJAMA):
        train = D.group_texts(D.load_texts(args.data_path, "train", args.train_num_data, args.seed), tokenizer, args.seq_len)
        test = D.group_texts(D.load_texts(args.data_path, "test", args.train_num_data, args.seed), tokenizer, args.seq_len)
        return train, test
    blocks = D.group_texts(D.load_texts(args.data_path, "train", seed=args.seed), tokenizer, args.seq_len)
    return D.split_blocks(blocks, args.num_test_blocks, args.train_num_data, args.seed)


def setup(model_args, args, rank: int = 0, select: bool = True) -> Context:
    """Seed, load model + tokenizer (fp32), build data blocks and score every candidate block."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar; our own steps show tqdm progress
    seed_everything(args.seed, rank=0)  # same seed on every rank: identical data and selection (spec bug 5)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    check_output_dir(args.output_dir)
    device = pick_device(args.device)
    tokenizer = load_tokenizer(model_args.model_name, use_fast=model_args.use_fast)
    model = load_causal_lm(model_args.model_name, dtype=torch.float32, device=device).eval()
    n_layers = len(get_adapter(model).layers(model))
    check_interval(args.layer_intervals, n_layers, args.num_lightweight_layers)
    train, test = load_data(args, tokenizer)
    selection = {}
    if select:
        calib = D.sample_blocks(train, args.cosine_num_data, args.seed)
        selection = select_block(model, calib, args, device, rank)
    return Context(model, tokenizer, device, train, test, selection,
                   record={"num_layers": n_layers, "train_blocks": len(train), "test_blocks": len(test)})


def select_block(model, calib: torch.Tensor, args, device, rank: int = 0) -> dict:
    """Cosine scores of every candidate block on ``calib``; printed (main rank) and returned."""
    batch_list = [{k: v.to(device) for k, v in b.items()} for b in D.batches(calib, args.batch_size)]
    sel = score_blocks(model, batch_list, args.layer_intervals, args.num_lightweight_layers)
    if rank == 0:
        span = args.layer_intervals + args.num_lightweight_layers
        for j, s in enumerate(sel["scores"]):
            print(f"cosine(hidden_states {j}, hidden_states {j + span}) = {s:.6f}")
        b = sel["best_layer"]
        print(f"best block: hidden_states {b} and {b + span} (layers {b}..{b + span - 1} -> "
              f"{args.num_lightweight_layers} lightweight layer(s))", flush=True)
    return sel


def assemble(model, best: int, n: int, kind: str, modules) -> torch.nn.Module:
    """The pruned model; for ``ffn`` the FFN module sits in the slot of layer ``best`` (in memory only)."""
    k = len(modules)
    keep = streamline_keep(len(get_adapter(model).layers(model)), best, n, k)
    if kind == "ffn":
        pruned = build_pruned_model(model, keep)
        get_adapter(pruned).layers(pruned)[best] = modules[0]
        return pruned
    return build_pruned_model(model, keep, {best + i: m for i, m in enumerate(modules)})


def save_output(pruned, tokenizer, out_dir: str, record: dict, kind: str = "layer", modules=None) -> Path:
    """Write the checkpoint (or, for ffn, the FFN weights) + tokenizer + streamline.json, atomically."""
    out = check_output_dir(out_dir)
    with atomic_dir(out) as tmp:
        if kind == "ffn":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in modules[0].state_dict().items()}, str(tmp / "ffn.safetensors"))
        else:
            pruned.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {**record, "params": count_params(pruned), "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(tmp / RECORD, record)
    return out


def load_streamlined(path: str, dtype=torch.float32):
    """Load a result directory: plain HF for layer/swiglu; ffn rebuilds base model + pruning + FFN weights."""
    path = Path(path)
    rec_path = path / RECORD
    if not rec_path.is_file():
        raise UserError(f"{path} has no {RECORD} (not an LLM-Streamline output directory)")
    record = json.loads(rec_path.read_text())
    if record.get("lightweight", "layer") != "ffn":
        return load_causal_lm(str(path), dtype=dtype), record
    from safetensors.torch import load_file

    base = load_causal_lm(record["model_name"], dtype=dtype)
    ffn = FFN(base.config.hidden_size).to(dtype)
    ffn.load_state_dict(load_file(str(path / "ffn.safetensors")))
    return assemble(base, record["best_layer"], record["layer_intervals"], "ffn", [ffn]), record
