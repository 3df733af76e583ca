"""Images in a prompt: ``ImageChunk``, ``ModelInput`` builders, and what a server says.

Builds a prompt of text, an image and more text, checks the image on this machine (PNG or
JPEG, by its bytes), and asks the model to continue it.

* The image is the file named by ``TINKER_IMAGE_PATH``, or else a tiny PNG drawn in memory.
* ``TINKER_IMAGE_EXPECTED_TOKENS`` is how many tokens the image takes, if you know it: it is
  advisory (the server counts for itself) but ``ModelInput.length`` needs it.

The built-in local model reads text only, so locally the server refuses the image with a
clear message and the script says so; that refusal is the expected outcome. Against the
hosted service and a vision model the model describes the image::

    python examples/vision_input.py

    export TINKER_API_KEY=... TINKER_BASE_MODEL=Qwen/Qwen3-VL-30B-A3B-Instruct
    TINKER_IMAGE_PATH=cat.jpg python examples/vision_input.py
"""

from __future__ import annotations

import argparse
import os
import struct
import zlib

from tinkex import (
    BadRequestError,
    ImageChunk,
    InvalidImageError,
    ModelInput,
    RequestFailedError,
    SamplingParams,
)
from tinkex.backend import open_service, wants_local_backend

LOCAL_MODEL = "tinkex/tiny-llama"
HOSTED_VISION_MODEL = "Qwen/Qwen3-VL-30B-A3B-Instruct"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_model = LOCAL_MODEL if wants_local_backend() else HOSTED_VISION_MODEL
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", default_model),
        help=f"base model (env TINKER_BASE_MODEL; default {default_model})",
    )
    parser.add_argument("--max-tokens", type=int, default=40, help="tokens to generate")
    return parser.parse_args()


def tiny_png(width: int = 4, height: int = 4) -> bytes:
    """A real PNG (red-green stripes) made with zlib alone, no imaging library."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    stripes = [b"\xff\x00\x00", b"\x00\xff\x00"]
    rows = b"".join(b"\x00" + b"".join(stripes[x % 2] for x in range(width)) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def load_image() -> ImageChunk:
    """The image of the environment's choosing, checked: PNG/JPEG, and its format detected."""
    raw_tokens = os.environ.get("TINKER_IMAGE_EXPECTED_TOKENS", "").strip()
    expected = int(raw_tokens) if raw_tokens.isascii() and raw_tokens.isdigit() else None
    if raw_tokens and not expected:
        raise SystemExit(
            f"TINKER_IMAGE_EXPECTED_TOKENS={raw_tokens!r} is not a positive whole number of "
            "tokens; set it to how many tokens the image takes, or unset it"
        )
    path = os.environ.get("TINKER_IMAGE_PATH")
    if path:
        try:
            image = ImageChunk.from_path(path, expected_tokens=expected)
        except (OSError, ValueError) as exc:  # unreadable, not an image, bad token count
            raise SystemExit(f"TINKER_IMAGE_PATH: {exc}") from None
        print(f"image: {image.format}, {len(image.data)} bytes from {path}")
    else:
        image = ImageChunk.from_bytes(tiny_png(), expected_tokens=expected)
        print(f"image: {image.format}, {len(image.data)} bytes drawn in memory")
    return image


def main() -> None:
    args = parse_args()
    image = load_image()

    # What the client refuses before anything is uploaded.
    try:
        ImageChunk.from_bytes(b"GIF89a... not a PNG or JPEG")
    except InvalidImageError as exc:
        print(f"client-side check: {exc}")

    with open_service(announce=print) as service:
        sampler = service.create_sampling_client(base_model=args.base_model).result()
        tokenizer = sampler.get_tokenizer()
        prompt = ModelInput.from_ints(tokenizer.encode("Here is a picture:")).append(image)
        for token in tokenizer.encode(" It shows", add_special_tokens=False):
            prompt = prompt.append_int(token)  # after an image: starts a new text chunk
        print("prompt chunks: " + ", ".join(chunk.type for chunk in prompt.chunks))
        try:
            print(f"prompt length: {prompt.length} tokens")
        except ValueError as exc:
            print(f"prompt length: unknown ({exc})")

        params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
        try:
            response = sampler.sample(prompt, num_samples=1, sampling_params=params).result()
        except (BadRequestError, RequestFailedError) as exc:
            print(f"server answer: {exc}")
            if wants_local_backend():
                print("(expected: the local backend's model reads text only)")
            return
        text = tokenizer.decode(response.sequences[0].tokens, skip_special_tokens=True)
        print(f"completion: {text!r}")


if __name__ == "__main__":
    main()
