"""The simulator's randomness: one seeded stream, weighted draws and ids that never repeat."""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Dice:
    """The simulator's one random stream, so that a seed fixes every byte of the output.

    ``chance`` is for behaviour (how often people shop); ``noisy`` is for data-quality noise
    (typos, variants, junk) and scales with the ``noise`` setting, so ``noise=0`` gives clean data.
    """

    def __init__(self, seed: int, noise: float) -> None:
        self.rng = random.Random(seed)
        self.noise = noise

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def noisy(self, rate: float) -> bool:
        return self.rng.random() < rate * self.noise

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.random() * len(options))]

    def between(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``, both included (faster than ``randint``, which counts
        when a simulation makes millions of draws)."""
        return low + int(self.rng.random() * (high - low + 1))

    def digits(self, n: int) -> str:
        return f"{self.rng.randrange(10**n):0{n}d}"

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


class Weighted(Generic[T]):
    """Values drawn by weight, by bisection over cumulative weights (fast for long name lists)."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.values = [value for value, _ in pairs]
        self.cumulative: list[float] = []
        total = 0.0
        for _, weight in pairs:
            total += weight
            self.cumulative.append(total)
        self.total = total

    @classmethod
    def ranked(cls, values: Sequence[T], exponent: float) -> Weighted[T]:
        """Zipf-like weights by rank: a few very common values and a long tail, like real names."""
        return cls([(value, (rank + 1) ** -exponent) for rank, value in enumerate(values)])

    def draw(self, dice: Dice) -> T:
        index = bisect.bisect_right(self.cumulative, dice.rng.random() * self.total)
        return self.values[min(index, len(self.values) - 1)]


class Ids:
    """Random identifiers that never repeat: they look like real system ids and say nothing about
    the person they belong to."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def fresh(self, make: Callable[[], str]) -> str:
        value = make()
        while value in self._taken:
            value = make()
        self._taken.add(value)
        return value
