"""The suite's `measurement:` and `optimizer:` sections: how each cell is timed and trained."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from hlbench.cell import SCHEDULE_KEYS
from hlbench.suite.fields import Repeats, Seconds, Steps, StrictModel


class Measurement(StrictModel):
    warmup_steps: Steps = Field(
        3, description="optimizer steps timed as startup (the first included)"
    )
    steps: Steps = Field(10, description="optimizer steps per measured window")
    windows: Repeats = Field(3, description="measured windows per worker")
    repeats: Repeats = Field(1, description="fresh worker processes per cell, one record each")
    budget_s: Seconds = Field(
        300.0, description="measured time per cell; past it the windows stop early"
    )
    timeout_s: Seconds = Field(
        1800.0, description="wall time per worker; past it the worker is killed"
    )
    eval_batches: Annotated[int, Field(ge=0, le=100_000)] = Field(
        4, description="held-out batches for the eval loss"
    )
    # time to target (hlbench.worker.quality); the keys below are rejected in fixed_steps mode
    mode: Literal["fixed_steps", "time_to_target"] = Field(
        "fixed_steps", description="fixed_steps: warmup + windows; time_to_target: to a loss"
    )
    target_excess_nats: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        None, description="target: held-out loss at most this far above the entropy floor"
    )
    target_eval_loss: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        None, description="target: an absolute held-out loss (corpora without a known floor)"
    )
    eval_every_steps: Steps | None = Field(None, description="optimizer steps between evals")
    max_steps: Steps | None = Field(None, description="budget: optimizer steps, warmup included")
    max_tokens: Annotated[int, Field(gt=0, le=1 << 40)] | None = Field(
        None, description="budget: tokens trained on (global batch × seq_len per step)"
    )
    max_time_s: Seconds | None = Field(None, description="budget: training time, evals excluded")
    seeds: list[Annotated[int, Field(ge=0, lt=1 << 32)]] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="init/data-order seeds, one repeat each (the corpus stays the suite's)",
    )

    stop_at_target: bool = Field(
        True, description="false: train on to the budget (final loss at equal budgets)"
    )

    @model_validator(mode="before")
    @classmethod
    def _repeats_from_seeds(cls, data: Any) -> Any:
        # one repeat per seed: `repeats` follows the list unless the suite says it explicitly
        if isinstance(data, dict) and isinstance(data.get("seeds"), list) and "repeats" not in data:
            return {**data, "repeats": max(len(data["seeds"]), 1)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Measurement:
        if self.seeds is not None:
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError("seeds: a seed is listed twice")
            if self.repeats != len(self.seeds):
                raise ValueError(
                    f"repeats: {self.repeats} with {len(self.seeds)} seeds; each seed is one "
                    "repeat (leave repeats out)"
                )
        quality = ("target_excess_nats", "target_eval_loss", "eval_every_steps", "max_steps")
        quality += ("max_tokens", "max_time_s")
        given = [k for k in quality if getattr(self, k) is not None]
        given += ["stop_at_target"] if "stop_at_target" in self.model_fields_set else []
        if self.mode == "fixed_steps":
            if given:
                raise ValueError(f"{given[0]}: applies to mode: time_to_target only")
            return self
        if (self.target_excess_nats is None) == (self.target_eval_loss is None):
            raise ValueError(
                "mode time_to_target needs exactly one of target_excess_nats, target_eval_loss"
            )
        if self.eval_every_steps is None:
            raise ValueError("mode time_to_target needs eval_every_steps")
        if self.max_steps is None and self.max_tokens is None:
            # every step's batch is drawn before training, so the budget must bound the steps
            raise ValueError("mode time_to_target needs a step budget: max_steps or max_tokens")
        if self.eval_batches == 0:
            raise ValueError("mode time_to_target needs eval_batches > 0 (held-out batches)")
        return self


Beta = Annotated[float, Field(ge=0, lt=1)]


class Optimizer(StrictModel):
    name: Literal["adamw"] = "adamw"
    lr: Annotated[float, Field(gt=0, le=1000)] = 3e-4
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    eps: Annotated[float, Field(gt=0, le=1)] = 1e-8
    weight_decay: Annotated[float, Field(ge=0, le=1000)] = 0.1
    grad_clip_norm: Annotated[float, Field(gt=0, le=1e12)] | None = Field(
        1.0, description="global-norm clipping; null disables"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: linear warmup, then cosine decay to lr × lr_min_ratio"
    )
    lr_warmup_steps: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        0, description="cosine: optimizer steps of linear warmup to lr"
    )
    lr_decay_steps: Steps | None = Field(
        None, description="cosine: the step the rate reaches its floor; default: the step budget"
    )
    lr_min_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="cosine: the final rate as a fraction of lr"
    )

    @field_validator("betas", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _schedule(self) -> Optimizer:
        if self.lr_schedule == "constant":
            given = [k for k in SCHEDULE_KEYS[1:] if k in self.model_fields_set]
            if given:
                raise ValueError(f"{given[0]}: applies to lr_schedule: cosine only")
        elif self.lr_decay_steps is not None and self.lr_decay_steps <= self.lr_warmup_steps:
            raise ValueError(
                f"lr_decay_steps {self.lr_decay_steps} must exceed lr_warmup_steps "
                f"{self.lr_warmup_steps}"
            )
        return self
