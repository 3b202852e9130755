"""Draw a saliency map of an image model as a PNG: the image, and beside it where the gradient is large.

Asks a running server's POST /explain (method `saliency` by default) for one image, then writes the
input (grey) and the attribution magnitude (summed over channels, scaled to its maximum, black to
red to yellow) side by side. The image is a PNG or JPEG (resized and converted to the model's
input shape) or a .npy array of one row; without one, a seeded random image is used.

Run: .venv/bin/python scripts/saliency_png.py --url http://127.0.0.1:8000 --model cnn --out saliency.png
     [--image digit.png] [--method integrated_gradients] [--target argmax] [--scale 8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import requests
from PIL import Image


def input_shape(url: str, model: str) -> tuple[int, ...]:
    """One row's shape of the model's only input, from GET /models/NAME (the latest version)."""
    versions = requests.get(f"{url}/models/{model}", timeout=30).json()["versions"]
    available = [v for v in versions if v["state"] == "AVAILABLE"]
    if not available:
        sys.exit(f"model {model!r} has no AVAILABLE version")
    inputs = max(available, key=lambda v: v["version"])["inputs"]
    if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
        sys.exit("this script draws models with one image input shaped [batch, height, width, channels]")
    return tuple(inputs[0]["shape"][1:])


def load_image(path: Path | None, shape: tuple[int, ...]) -> np.ndarray:
    """One row for the model, values in 0..1: the file resized and converted, or a seeded random image."""
    height, width, channels = shape
    if path is None:
        return np.random.default_rng(0).random(shape).astype(np.float32)
    if path.suffix == ".npy":
        return np.load(path).astype(np.float32).reshape(shape)
    picture = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height))
    return (np.asarray(picture, dtype=np.float32) / 255.0).reshape(shape)


def heat(values: np.ndarray) -> np.ndarray:
    """Magnitudes 0..1 as RGB bytes: black, red, then yellow."""
    red = np.clip(values * 2, 0, 1)
    green = np.clip(values * 2 - 1, 0, 1)
    return (np.stack([red, green, np.zeros_like(values)], axis=-1) * 255).astype(np.uint8)


def draw(image: np.ndarray, attribution: np.ndarray, scale: int) -> Image.Image:
    """The image (grey or colour) and the scaled attribution magnitude, side by side."""
    magnitude = np.abs(attribution).sum(axis=-1)
    magnitude = magnitude / magnitude.max() if magnitude.max() > 0 else magnitude
    shown = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    left = Image.fromarray(shown[..., 0] if shown.shape[-1] == 1 else shown).convert("RGB")
    right = Image.fromarray(heat(magnitude))
    size = (left.width * scale, left.height * scale)
    canvas = Image.new("RGB", (size[0] * 2 + scale, size[1]), "white")
    canvas.paste(left.resize(size, Image.NEAREST), (0, 0))
    canvas.paste(right.resize(size, Image.NEAREST), (size[0] + scale, 0))
    return canvas


def main(argv: list[str] | None = None) -> int:
    """Ask the server for the saliency of one image and write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", type=Path)
    parser.add_argument("--method", default="saliency",
                        choices=("saliency", "integrated_gradients", "gradient_x_input"))
    parser.add_argument("--target", default="argmax", help='"argmax" or an output index')
    parser.add_argument("--scale", type=int, default=8, help="pixels per input pixel in the PNG")
    parser.add_argument("--out", type=Path, default=Path("saliency.png"))
    args = parser.parse_args(argv)
    image = load_image(args.image, input_shape(args.url, args.model))
    target = args.target if args.target == "argmax" else int(args.target)
    answer = requests.post(f"{args.url}/explain", timeout=120, json={
        "model": args.model, "instances": [image.tolist()], "method": args.method, "target": target})
    if answer.status_code != 200:
        sys.exit(f"/explain answered {answer.status_code}: {answer.text}")
    row = answer.json()["explanations"][0]
    (attribution,) = row["attributions"].values()
    draw(image, np.asarray(attribution, dtype=np.float32), args.scale).save(args.out)
    print(f"{args.out}: target {row['target']}, prediction {row['prediction']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
