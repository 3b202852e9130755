"""Random byte-level mutations of JSON bodies, for the tests of the JSON fast paths."""
from __future__ import annotations

import random


def mutated(rng: random.Random, seeds: list[bytes], alphabet: bytes) -> bytes:
    """One of `seeds` with 1 to 3 bytes deleted, replaced or inserted (from `alphabet`) at random."""
    body = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 3)):
        position = rng.randrange(len(body) + 1)
        action = rng.random()
        if action < 0.4 and position < len(body):
            del body[position]
        elif action < 0.7 and position < len(body):
            body[position] = rng.choice(alphabet)
        else:
            body.insert(position, rng.choice(alphabet))
    return bytes(body)
