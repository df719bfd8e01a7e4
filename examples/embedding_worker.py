"""An embedding worker on the trio SDK.

    III_URL=ws://localhost:49134 python examples/embedding_worker.py

``embedding::similarity`` is the cosine similarity of two vectors, in pure Python.
``embedding::generate`` turns texts into unit vectors with a pluggable encoder; the
default hashes words into buckets (deterministic, nothing to download). Pass another
encoder to :func:`make_worker` to use a real model.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from iii_trio.sdk import III, InvocationError

Encoder = Callable[[str], list[float]]
DIMENSIONS = 64


def hashing_encoder(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """Signed feature hashing of the words of ``text``, normalised to unit length."""
    vector = [0.0] * dimensions
    for word in text.lower().split():
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % dimensions] += 1.0 if digest >> 63 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b) or not a:
        raise InvocationError("invalid_input", "vectors must be non-empty and the same length")
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def make_worker(url: str, encoder: Encoder = hashing_encoder) -> III:
    iii = III(url, worker_name="embedding")

    @iii.function(id="embedding::similarity", description="Compute cosine similarity")
    async def similarity(input: dict[str, Any]) -> dict[str, float]:
        return {"similarity": cosine(input["a"], input["b"])}

    @iii.function(id="embedding::generate", description="Embed texts as unit vectors")
    def generate(input: dict[str, Any]) -> dict[str, Any]:
        # A sync handler: a real model would block, so the SDK runs it in a thread.
        texts = input.get("texts") or [input["text"]]
        embeddings = [encoder(text) for text in texts]
        return {"embeddings": embeddings, "dimensions": len(embeddings[0])}

    return iii


if __name__ == "__main__":
    make_worker(os.environ.get("III_URL", "ws://localhost:49134")).run()
