"""Random values of the post-processing numbers, drawn from each Param's declared kind (not from its name),
so a step declared tomorrow is exercised by the tests that use these the day it is declared."""
from __future__ import annotations

import random

from kaggle_kit.post.steps import Param

_COUNTS = (1, 2, 3, 5, 9, 30)  # and, one draw in ten, 1000 (more than any test volume holds)


def random_value(p: Param, rng: random.Random, lowest_threshold: float = 0.2, neutral_share: float = 1 / 3,
                 active: bool = False):
    """One valid value of ``p`` (checked by ``p.check``): its neutral with probability ``neutral_share``, else
    a draw of its kind that is not neutral (``active``: never the neutral). Thresholds stay at or above
    ``lowest_threshold`` (the tuner crops its maps there)."""
    if not active and not p.required and rng.random() < neutral_share:
        return p.neutral
    for _ in range(100):
        k = p.kind
        if k == "threshold":
            v = round(rng.uniform(lowest_threshold, 0.8), 3)
        elif k == "prob":
            v = round(rng.uniform(0.02, 0.7), 2)
        elif k == "fraction":
            v = rng.choice([round(rng.uniform(0.02, 0.5), 2), 1.0])
        elif k == "count":
            v = 1000 if rng.random() < 0.1 else rng.choice(_COUNTS)
        elif k == "odd":
            v = rng.choice([1, 3, 5, 21])
        elif k == "conn":
            v = rng.choice([4, 8])
        elif k == "bool":
            v = rng.choice([False, True])
        else:  # a kind added to steps.KINDS needs its draw here
            raise AssertionError(f"no random draw for kind {k!r} of param {p.name}")
        if not p.is_neutral(v):
            return p.check(v, p.name)
    raise AssertionError(f"param {p.name}: no non-neutral value of kind {p.kind!r} drawn")
