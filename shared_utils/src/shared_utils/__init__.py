"""shared_utils: the small set of helpers that all five workspace projects use.

Modules (import what you need; importing the package itself is cheap and does not import torch):
    errors   UserError / OfflineError and ``cli_main`` (one clear line, non-zero exit)
    hub      offline detection and ``require_hub`` (fail fast, naming the offline alternative)
    models   ``load_causal_lm``, ``load_tokenizer`` (tokenizer-only for the embedded model), ``resolve_model_path`` (embedded SmolLM2), ``tiny_llama``,
             ``pick_device``, ``pick_dtype``
    answers  GSM8K answer extraction / normalisation, calculator-annotation stripping
    data     GSM8K loading (Hub or local jsonl), text corpora (Hub, local file, embedded)
    corpus   the embedded English corpus (docstrings of the Python standard library)
    metrics  exact match, token-level NLL / perplexity / accuracy, cosine / MSE / relative error
    lmeval   lm-eval ``simple_evaluate`` on a model dir, online or on local copies of public tasks
    runs     seeding, threads, atomic writes, output-path / resume-config checks, safe JSON / checkpoint loads,
             run directories (config, meta.json, metrics.jsonl), loss plots
    stats    bootstrap / t / two-level / block intervals, paired differences, verdicts, the results-table writer
    bench    interleaved timing with warm-up, median and ratio intervals, matmul peak of this machine
"""

__version__ = "0.1.0"
