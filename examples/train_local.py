"""The main job: fine-tune the built-in model on the embedded local backend, then sample.

Starts ``tinkex serve`` in-process on a free 127.0.0.1 port (no account, no network) and
drives it with the tinkex client: a short LoRA run with cross-entropy, a checkpoint, and
samples from the trained weights. It always runs locally: starting the server explicitly is
its point (``examples/training_loop.py`` is the same loop for any backend). The script is
also valid code for the official ``tinker`` SDK: replace ``import tinkex as tinker`` and
``from tinkex import types`` with ``import tinker`` and ``from tinker import types``.

    python examples/train_local.py [--steps 80]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import tinkex as tinker
from tinkex import types
from tinkex.local import LocalServer, ServerConfig

BASE_MODEL = "tinkex/tiny-llama"
API_KEY = "tml-local-example"
LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Actors crash; supervisors restart them.",
    "Tinker trains LoRA adapters as a service.",
    "Let it crash, and keep the daemon running.",
]


def datum(text: str) -> types.Datum:
    tokens = list(text.encode())
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=64)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as data_dir,
        LocalServer(ServerConfig(port=0, data_dir=Path(data_dir))) as server,
    ):
        print(f"local Tinker backend at {server.url} (model {BASE_MODEL})")
        service = tinker.ServiceClient(base_url=server.url, api_key=API_KEY)
        training = service.create_lora_training_client(
            base_model=BASE_MODEL, rank=args.rank, seed=0
        ).result()
        batch = [datum(line) for line in LINES]
        tokens = sum(len(line) for line in LINES)
        started = time.monotonic()
        for step in range(1, args.steps + 1):
            fwdbwd = training.forward_backward(batch, "cross_entropy")
            optim = training.optim_step(types.AdamParams(learning_rate=args.learning_rate))
            loss = fwdbwd.result().metrics["loss:sum"] / tokens
            optim.result()
            if step == 1 or step % 5 == 0 or step == args.steps:
                rate = step * tokens / (time.monotonic() - started)
                print(f"step {step:3d}  loss/token {loss:.3f}  {rate:,.0f} tokens/s")
        path = training.save_state("final").result().path
        print(f"checkpoint: {path}")
        sampler = training.save_weights_and_get_sampling_client().result()
        for prefix in ("The quick", "Actors", "Let it"):
            prompt = types.ModelInput.from_ints(list(prefix.encode()))
            params = types.SamplingParams(max_tokens=40, temperature=0.0, stop=["."])
            seq = sampler.sample(prompt, num_samples=1, sampling_params=params).result()
            text = bytes(t for t in seq.sequences[0].tokens if t < 256).decode(errors="replace")
            print(f"sample: {prefix!r} -> {prefix + text!r}")
        service.close("success").result()


if __name__ == "__main__":
    main()
