"""Throughput of the local backend through its HTTP API, next to the same work done directly.

One run measures, side by side, on the built-in ``tinkex/tiny-llama``:

* training: ``forward_backward`` (cross-entropy) + ``optim_step`` on a fixed batch, driven
  by the official ``tinker`` SDK against an in-process :class:`~tinkex.local.LocalServer`,
  and the same calls made on a :class:`~tinkex.local.model.TrainableModel` in torch;
* sampling: ``SamplingClient.sample`` through HTTP and ``Sampler.sample`` in torch, with
  ``stop=[]`` so every sequence is exactly ``max_tokens`` long.

The ratio HTTP / direct shows what the server (HTTP, JSON/protobuf, futures, queueing, the
SDK's polling) costs on top of the compute. The two sides are timed alternately, call by
call, so background load hits both alike. Numbers are printed, never asserted.

    python benchmarks/local_backend.py [--steps N] [--samples N] [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tinker
import torch
from tinker import types

from tinkex.local import LocalServer, ServerConfig
from tinkex.local.model import (
    BUILTIN_MODEL,
    AdamConfig,
    DatumArrays,
    LoraSpec,
    Sampler,
    TrainableModel,
    load_base_model,
)

API_KEY = "tml-local-benchmark"
LORA_RANK = 16
LEARNING_RATE = 1e-4
VOCAB = 256  # byte tokens only; the built-in model's vocabulary adds a few specials on top


@dataclass(frozen=True)
class Settings:
    batch: int
    seq_len: int
    warmup: int
    steps: int
    prompt_len: int
    max_tokens: int
    num_samples: int
    samples: int
    sample_warmup: int


@dataclass
class Measurement:
    """Wall times of the timed calls of one side, and the tokens each call processed."""

    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def mean_rate(self) -> float:
        return sum(self.tokens) / sum(self.seconds)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_rate(self) -> float:
        return statistics.median(self.tokens) / self.median_seconds


Call = Callable[[int], int]
"""One timed unit of work, given its index; returns how many tokens it processed."""


def compare(calls: int, warmup: int, direct: Call, http: Call) -> tuple[Measurement, Measurement]:
    """Warm both sides up, then time them alternately, call by call.

    Interleaving (and swapping who goes first) keeps a change in background load from
    favouring one side, which matters on a small shared machine.
    """
    for i in range(warmup):
        direct(-1 - i)
        http(-1 - i)
    results = (Measurement(), Measurement())
    for i in range(calls):
        order = ((0, direct), (1, http)) if i % 2 == 0 else ((1, http), (0, direct))
        for side, call in order:
            t0 = time.perf_counter()
            tokens = call(i)
            results[side].seconds.append(time.perf_counter() - t0)
            results[side].tokens.append(tokens)
    return results


def make_sequences(settings: Settings) -> list[np.ndarray]:
    """Fixed pseudo-random byte sequences of ``seq_len + 1`` tokens (input + shifted target)."""
    rng = np.random.default_rng(1234)
    return [
        rng.integers(0, VOCAB, settings.seq_len + 1, dtype=np.int64) for _ in range(settings.batch)
    ]


def make_prompt(settings: Settings) -> np.ndarray:
    return np.random.default_rng(4321).integers(0, VOCAB, settings.prompt_len, dtype=np.int64)


# direct: the compute core in torch ------------------------------------------------------------


class Direct:
    """``TrainableModel`` and ``Sampler`` called in this thread, no server involved."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = load_base_model(BUILTIN_MODEL)
        self.model = TrainableModel(self.base, LoraSpec(rank=LORA_RANK, seed=0))
        self.batch = [
            DatumArrays(
                tokens=seq[:-1],
                inputs={
                    "target_tokens": seq[1:],
                    "weights": np.ones(settings.seq_len, dtype=np.float32),
                },
            )
            for seq in make_sequences(settings)
        ]
        self.adam = AdamConfig(learning_rate=LEARNING_RATE)
        self.prompt = make_prompt(settings)
        self.sampler: Sampler | None = None

    def train_step(self, _: int) -> int:
        self.model.forward_backward(self.batch, "cross_entropy", None, forward_only=False)
        self.model.optim_step(self.adam)
        return self.settings.batch * self.settings.seq_len

    def sample(self, i: int) -> int:
        if self.sampler is None:
            self.sampler = Sampler(self.base, self.model.lora_weights())
        output = self.sampler.sample(
            self.prompt,
            num_samples=self.settings.num_samples,
            max_tokens=self.settings.max_tokens,
            temperature=1.0,
            seed=1000 + i,
            stop=[],
        )
        return sum(len(seq.tokens) for seq in output.sequences)


# HTTP: the official SDK against an in-process server ------------------------------------------


class Http:
    """The official ``tinker`` SDK driving a :class:`LocalServer` in this process."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.service = tinker.ServiceClient(base_url=url, api_key=API_KEY)
        self.training = self.service.create_lora_training_client(
            base_model=BUILTIN_MODEL, rank=LORA_RANK, seed=0
        ).result()
        self.data = [
            types.Datum(
                model_input=types.ModelInput.from_ints(seq[:-1].tolist()),
                loss_fn_inputs={
                    "target_tokens": types.TensorData.from_numpy(seq[1:]),
                    "weights": types.TensorData.from_numpy(np.ones(settings.seq_len, np.float32)),
                },
            )
            for seq in make_sequences(settings)
        ]
        self.adam = types.AdamParams(learning_rate=LEARNING_RATE)
        self.prompt = types.ModelInput.from_ints(make_prompt(settings).tolist())
        self.sampler: tinker.SamplingClient | None = None

    def train_step(self, _: int) -> int:
        fwdbwd = self.training.forward_backward(self.data, "cross_entropy")
        optim = self.training.optim_step(self.adam)
        fwdbwd.result()
        optim.result()
        return self.settings.batch * self.settings.seq_len

    def sample(self, i: int) -> int:
        if self.sampler is None:
            self.sampler = self.training.save_weights_and_get_sampling_client().result()
        params = types.SamplingParams(
            max_tokens=self.settings.max_tokens, temperature=1.0, seed=1000 + i, stop=[]
        )
        response = self.sampler.sample(
            self.prompt, num_samples=self.settings.num_samples, sampling_params=params
        ).result()
        return sum(len(seq.tokens) for seq in response.sequences)

    def close(self) -> None:
        self.service.close("success").result(timeout=30)


# report -----------------------------------------------------------------------------------------


def report(
    settings: Settings,
    training: tuple[Measurement, Measurement],
    sampling: tuple[Measurement, Measurement],
) -> None:
    print()
    print(
        f"training: {settings.batch} datums x {settings.seq_len} tokens, forward_backward "
        f"(cross_entropy) + optim_step, {settings.warmup} warm-up + {settings.steps} timed steps"
    )
    print(
        f"sampling: prompt {settings.prompt_len} tokens, {settings.num_samples} samples x "
        f"{settings.max_tokens} tokens, temperature 1, stop=[], {settings.sample_warmup} "
        f"warm-up + {settings.samples} timed calls"
    )
    print()
    header = f"{'':<32} {'direct':>10} {'HTTP':>10} {'HTTP/direct':>12}"
    print(header)
    print("-" * len(header))
    for name, (direct, http) in (("training", training), ("sampling", sampling)):
        for label, d, h in (
            ("tokens/s (median call)", direct.median_rate, http.median_rate),
            ("tokens/s (mean)", direct.mean_rate, http.mean_rate),
        ):
            print(f"{name + ' ' + label:<32} {d:>10,.0f} {h:>10,.0f} {h / d:>12.2f}")
        d_ms, h_ms = 1000 * direct.median_seconds, 1000 * http.median_seconds
        label = f"{name} {'ms/step' if name == 'training' else 'ms/call'} (median)"
        print(f"{label:<32} {d_ms:>10.1f} {h_ms:>10.1f} {h_ms / d_ms:>12.2f}")
    print()
    print("HTTP = official tinker SDK -> in-process LocalServer (same process, same cores).")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (30)")
    parser.add_argument("--samples", type=int, default=None, help="timed sample calls (12)")
    parser.add_argument("--quick", action="store_true", help="tiny counts (about 20 s)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = parser.parse_args()

    quick = args.quick
    settings = Settings(
        batch=8,
        seq_len=128,
        warmup=1 if quick else 3,
        steps=args.steps if args.steps is not None else (4 if quick else 30),
        prompt_len=32,
        max_tokens=64,
        num_samples=4,
        samples=args.samples if args.samples is not None else (3 if quick else 12),
        sample_warmup=1,
    )
    if settings.steps < 1 or settings.samples < 1:
        parser.error("--steps and --samples must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TINKER_TELEMETRY", "0")

    print(
        f"tinkex local backend benchmark: {BUILTIN_MODEL}, LoRA rank {LORA_RANK}; "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} intra-op threads"
    )
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="tinkex-bench-") as data_dir,
        LocalServer(ServerConfig(port=0, data_dir=Path(data_dir))) as server,
    ):
        direct = Direct(settings)
        http = Http(settings, server.url)
        try:
            training = compare(settings.steps, settings.warmup, direct.train_step, http.train_step)
            sampling = compare(settings.samples, settings.sample_warmup, direct.sample, http.sample)
        finally:
            http.close()
    report(settings, training, sampling)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
