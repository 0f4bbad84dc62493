"""Arguments of the original ``args.py`` (same names and defaults), plus what a CPU / offline run needs.

Every field is also a command-line flag (``python mseloss_entry.py --layer_intervals 4``), parsed with
``HfArgumentParser`` as in the original; unlike the original, unknown flags are an error instead of being
silently ignored, and ``output_dir`` is actually where the result is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared_utils.errors import UserError


@dataclass
class ModelArguments:
    model_name: str = field(default="meta-llama/Llama-3.1-8B", metadata={
        "help": "Hub id, local HF directory, or smollm2-135m (the embedded SmolLM2-135M-Instruct, offline)"})
    use_fast: bool = field(default=True, metadata={"help": "use a fast tokenizer (declared by the original)"})


@dataclass
class TrainingArguments:
    output_dir: str = field(default="./pruned_model", metadata={"help": "where the pruned model is saved"})
    layer_intervals: int = field(default=8, metadata={"help": "number of layers to prune (net)"})
    cosine_num_data: int = field(default=50, metadata={"help": "sequences used for the cosine similarity"})
    train_num_data: int = field(default=100000, metadata={
        "help": "SlimPajama: documents before domain weighting (original); local/embedded text: training sequences"})
    batch_size: int = field(default=8, metadata={"help": "micro-batch size"})
    gradient_accumulation_step: int = field(default=16, metadata={"help": "micro-batches per optimizer step"})
    epoches: int = field(default=1, metadata={"help": "training epochs"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    min_lr: float = field(default=5e-5, metadata={"help": "cosine floor"})
    wd: float = field(default=1e-3, metadata={"help": "AdamW weight decay"})
    # ---- added: what the CPU / offline reproduction needs
    seq_len: int = field(default=2048, metadata={"help": "tokens per training block (original: 2048)"})
    data_path: str = field(default="DKYoon/SlimPajama-6B", metadata={
        "help": "DKYoon/SlimPajama-6B (Hub), 'embedded' (stdlib docstrings) or a local text file/dir"})
    num_test_blocks: int = field(default=64, metadata={"help": "held-out blocks for validation (local/embedded data)"})
    lightweight: str = field(default="layer", metadata={"help": "layer | swiglu | ffn", "choices": ["layer", "swiglu", "ffn"]})
    num_lightweight_layers: int = field(default=1, metadata={"help": "lightweight layers replacing the block (net removal stays layer_intervals)"})
    seed: int = field(default=42, metadata={"help": "seed for data splits, sampling, shuffles and init"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    hidden_cache: str = field(default="auto", metadata={"help": "MSE hidden states: auto | memory | disk (memmap)"})
    hidden_cache_dir: str = field(default="", metadata={"help": "directory for the disk cache (default: system temp)"})
    cache_dtype: str = field(default="float32", metadata={"help": "float32 | float16 storage of cached hidden states"})
    lr_schedule: str = field(default="fixed", metadata={
        "help": "fixed: horizons in optimizer steps; reference: the original's argument values (bug 9)"})
    warmup_ratio: float = field(default=0.01, metadata={"help": "warmup share of optimizer steps (lr_schedule fixed)"})
    max_grad_norm: float = field(default=-1.0, metadata={"help": "clip norm; <0: 5.0 for MSE, 1.0 for LLM loss (original)"})
    mixed_precision: str = field(default="auto", metadata={"help": "LLM loss: auto (bf16 on CUDA, no on CPU) | no | bf16 | fp16"})
    mse_loss_start: int = field(default=0, metadata={
        "help": "first token position in the MSE loss (1 leaves out the attention-sink token 0, whose massive "
                "activations dominate the plain MSE; 0 = the original)"})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch default)"})
    save_steps: int = field(default=0, metadata={
        "help": "write a resumable checkpoint every N optimizer steps (0: never)"})
    checkpoint_dir: str = field(default="", metadata={"help": "where --save_steps writes (default: <output_dir>_checkpoint)"})
    resume_from_checkpoint: str = field(default="", metadata={
        "help": "continue a killed run from this checkpoint directory (or its trainer_state.pt)"})


def _head(path: Path, size: int = 1 << 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError as exc:
        raise UserError(f"data file {path} is unreadable ({exc.strerror})") from None


def validate(model_args: ModelArguments, args: TrainingArguments) -> None:
    positive = ("layer_intervals", "cosine_num_data", "train_num_data", "batch_size", "gradient_accumulation_step",
                "epoches", "seq_len", "num_lightweight_layers")
    for name in positive:
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.mse_loss_start < args.seq_len:
        raise UserError(f"--mse_loss_start must be in 0..{args.seq_len - 1}, got {args.mse_loss_start}")
    if args.save_steps < 0 or args.num_threads < 0:
        raise UserError(f"--save_steps and --num_threads must be >= 0, got {args.save_steps}, {args.num_threads}")
    if not (args.wd >= 0 and args.warmup_ratio >= 0):
        raise UserError(f"--wd and --warmup_ratio must be >= 0, got {args.wd}, {args.warmup_ratio}")
    from llm_streamline.data import SLIMPAJAMA

    if args.data_path not in ("", "embedded", SLIMPAJAMA):
        data = Path(args.data_path).expanduser()
        if not data.exists():
            raise UserError(f"data file {args.data_path} does not exist (use --data_path embedded, or a local text file)")
        if data.is_file() and not _head(data).strip():
            raise UserError(f"data file {args.data_path} is empty (no text to train on)")
    out = Path(args.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {out} exists and is not a directory")
    if args.num_test_blocks < 1:
        raise UserError(f"--num_test_blocks must be at least 1, got {args.num_test_blocks}")
    if not (args.lr > 0 and 0 <= args.min_lr <= args.lr):
        raise UserError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={args.lr}, min_lr={args.min_lr}")
    if args.lightweight == "ffn" and args.num_lightweight_layers != 1:
        raise UserError("--lightweight ffn replaces the block by one FFN; use --num_lightweight_layers 1")
    for name, allowed in (("hidden_cache", ("auto", "memory", "disk")), ("cache_dtype", ("float32", "float16")),
                          ("lr_schedule", ("fixed", "reference")), ("mixed_precision", ("auto", "no", "bf16", "fp16"))):
        if getattr(args, name) not in allowed:
            raise UserError(f"--{name} must be one of {', '.join(allowed)}, got '{getattr(args, name)}'")


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, TrainingArguments]:
    """Parse the command line into (ModelArguments, TrainingArguments); unknown flags are an error."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, TrainingArguments))
    model_args, args, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if rest:
        raise UserError(f"unknown arguments: {' '.join(rest)} (see --help)")
    validate(model_args, args)
    return model_args, args


def as_dict(model_args: ModelArguments, args: TrainingArguments) -> dict:
    return {**asdict(model_args), **asdict(args)}
