"""The faces sampling accepted are handed once to the batch that renders their identities,
per audit, and never more than SAMPLED_KEPT are held."""

import numpy as np

from worker import runtime


def test_each_face_is_given_once_to_its_own_audit(monkeypatch):
    monkeypatch.setattr(runtime, "_sampled", type(runtime._sampled)())
    a, b = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    runtime.keep_sampled(1, {10: a, 11: b})
    assert runtime.take_sampled(2, [10, 11]) == [None, None]  # another audit's seeds
    got = runtime.take_sampled(1, [11, 12, 10])
    assert got[0] is b and got[1] is None and got[2] is a
    assert runtime.take_sampled(1, [10, 11]) == [None, None]  # given out once


def test_the_oldest_faces_go_first_beyond_the_cap(monkeypatch):
    monkeypatch.setattr(runtime, "_sampled", type(runtime._sampled)())
    monkeypatch.setattr(runtime, "SAMPLED_KEPT", 3)
    runtime.keep_sampled(1, {s: np.full((1, 1, 3), s, np.uint8) for s in range(5)})
    kept = runtime.take_sampled(1, list(range(5)))
    assert [k is not None for k in kept] == [False, False, True, True, True]
