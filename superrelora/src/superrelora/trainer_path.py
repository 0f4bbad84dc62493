"""The HF ``Trainer`` path: same optimizer/scheduler objects, data order and merge hook as the manual loop.

The merge runs in ``SuperReLoRACallback.on_step_end`` (after optimizer.step, scheduler.step, zero_grad,
global_step += 1). ``on_save`` adds the merge-modified base weights to every Trainer checkpoint (a PeftModel
checkpoint alone holds only the adapter), and resuming restores them before Trainer reloads the rest.

    python scripts/train_superrelora.py --config training_configs/smoke_cpu.yaml --use_trainer
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from shared_utils.errors import NonFiniteLossError
from superrelora.checkpoint import load_state, save_state, write_run_info
from superrelora.config import config_to_dict


class SuperReLoRACallback(TrainerCallback):
    """Runs the shared MergeHook after every optimizer update and records per-update losses and timings."""

    def __init__(self, setup):
        self.setup = setup
        self.pending_merge = None
        self.times: list[float] = []
        self._t0 = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.pending_merge = self.setup.hook.on_update(state.global_step, model, optimizer)
        if self._t0 is not None:
            self.times.append(time.perf_counter() - self._t0)
        from superrelora.train import _maybe_eval

        _maybe_eval(self.setup, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            from superrelora.train import record_step

            lr = logs.get("learning_rate", float("nan"))
            record_step(self.setup, state.global_step, state.epoch or 0.0, float(logs["loss"]), lr, self.pending_merge)
            self.pending_merge = None

    def on_save(self, args, state, control, model=None, **kwargs):
        from superrelora.train import _everything

        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        save_state(model, ckpt, _everything(self.setup.cfg))
        write_run_info(ckpt, state.global_step, config_to_dict(self.setup.cfg), self.setup.hook.events)  # last


class SuperReLoRATrainer(Trainer):
    """Stops on a non-finite loss (Trainer would otherwise silently filter it out of the logs)."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"non-finite loss at update {self.state.global_step + 1}; "
                                     f"last good checkpoint in {self.args.output_dir}")
        return loss


def training_arguments(setup) -> TrainingArguments:
    cfg = setup.cfg
    return TrainingArguments(
        output_dir=cfg.output_dir, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_steps=setup.total_steps,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        logging_steps=1,  # per-update losses, like the manual loop (cfg.logging_steps drives the console)
        save_strategy="steps" if cfg.save_steps > 0 else "no", save_steps=cfg.save_steps or 500,
        seed=cfg.seed, bf16=cfg.bf16, fp16=cfg.fp16, report_to="none", remove_unused_columns=False,
        train_sampling_strategy="sequential", use_cpu=setup.device.type == "cpu", dataloader_num_workers=0,
    )


def train_with_trainer(setup) -> dict:
    from superrelora.train import build_optimizer, build_scheduler

    cfg = setup.cfg
    opt = build_optimizer(setup.model, cfg)
    sched = build_scheduler(opt, cfg, setup.total_steps)
    callback = SuperReLoRACallback(setup)
    trainer = SuperReLoRATrainer(model=setup.model, args=training_arguments(setup), train_dataset=setup.train_rows,
                                 data_collator=setup.collator, optimizers=(opt, sched), callbacks=[callback])
    resume = setup.resume
    if resume is not None:
        load_state(setup.model, resume)  # merge-modified base weights first; Trainer reloads adapter/optim/rng
        setup.hook.restore(int(resume.name.split("-")[-1]), setup.resume_info.get("merges"))
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    times = callback.times
    return {"step_times": times, "trainer_metrics": trainer.state.log_history[-1] if trainer.state.log_history else {},
            "finite": all(math.isfinite(r["loss"]) for r in setup.history)}
