"""The pool of large output buffers (fastconv/backends/_bigbuf.py): a new output of 4 MiB or
more reuses the buffer of an earlier one only when no array refers to it any more; the
results stay right; bounded; off with limit 0."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastconv as fc
from fastconv import ndimage
from fastconv.backends import _bigbuf

SIDE = 2900  # 2900 x 2900 float32: 33.6 MB, over the pool's 32 MiB threshold


def _addr(a):
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def fresh_pool():
    fc.set_buffer_pool_limit(0)  # lets every held buffer go
    fc.set_buffer_pool_limit(None)
    yield
    fc.set_buffer_pool_limit(0)
    fc.set_buffer_pool_limit(None)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).standard_normal((SIDE, SIDE)).astype(np.float32)


def test_reuses_a_dropped_output_and_never_a_held_one(image):
    w = np.ones((3, 3), np.float32) / 9
    y1 = ndimage.correlate(image, w)
    a1 = _addr(y1)
    y2 = ndimage.correlate(image, w)  # y1 is held: another buffer
    assert not np.shares_memory(y1, y2)
    want = y2.copy()
    del y1
    hits = fc.buffer_pool_info()["hits"]
    y3 = ndimage.correlate(image, w)  # y1's buffer is free again
    assert fc.buffer_pool_info()["hits"] == hits + 1 and _addr(y3) == a1
    np.testing.assert_array_equal(y3, want)
    np.testing.assert_array_equal(y2, want)  # untouched
    # a view, a memoryview, or an array made on the buffer keeps it out of the pool
    for keep in (lambda y: y[5:9], lambda y: memoryview(y), lambda y: np.asarray(y).T):
        y = ndimage.correlate(image, w)
        kept, addr = keep(y), _addr(y)
        del y
        for _ in range(2):
            z = ndimage.correlate(image, w)
            assert _addr(z) != addr
            del z
        del kept


@pytest.mark.parametrize("backend", ["c", "reference"])
def test_conv_outputs_right_while_buffers_cycle(backend):
    if fc.available_backends()[backend] != "available":
        pytest.skip(backend)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1, 1500, 1500)).astype(np.float32)
    held = []
    for i in range(4):
        w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)  # output 36 MB
        y = fc.conv2d(x, w, padding=1, backend=backend)
        want = fc.conv2d(x, w, padding=1, backend="reference" if backend == "c" else "c")
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
        if i % 2 == 0:
            held.append((y[0, :, :50, :50].copy(), y))
    for snapshot, y in held:
        np.testing.assert_array_equal(snapshot, y[0, :, :50, :50])
    assert fc.buffer_pool_info()["hits"] >= 1


def test_small_outputs_are_not_pooled_and_the_limit_holds(image):
    ndimage.correlate(image[:100, :100], np.ones((3, 3), np.float32))
    assert fc.buffer_pool_info()["entries"] == 0
    fc.set_buffer_pool_limit(40 * 2**20)  # room for one buffer
    ys = [ndimage.correlate(image, np.ones((3, 3), np.float32)) for _ in range(3)]
    info = fc.buffer_pool_info()
    assert info["bytes"] <= 40 * 2**20 and info["limit"] == 40 * 2**20
    del ys
    fc.set_buffer_pool_limit(0)
    assert fc.buffer_pool_info()["entries"] == 0 and fc.buffer_pool_info()["bytes"] == 0
    y = ndimage.correlate(image, np.ones((3, 3), np.float32))
    assert y.shape == image.shape and fc.buffer_pool_info()["entries"] == 0


@pytest.mark.parametrize("value, exc", [(-1, ValueError), ("1", TypeError), (1.5, TypeError),
                                        (True, TypeError)])
def test_invalid_limit(value, exc):
    with pytest.raises(exc, match="nbytes"):
        fc.set_buffer_pool_limit(value)


def test_concurrent_callers_never_share_a_live_output(image):
    w = np.full((3, 3), 1 / 9, np.float32)
    want = ndimage.correlate(image, w)
    errors = []

    def work():
        try:
            live = []
            for _ in range(4):
                y = ndimage.correlate(image, w)
                if any(np.shares_memory(y, z) for z in live):
                    raise AssertionError("a held output's buffer was handed out again")
                np.testing.assert_array_equal(y, want)
                live.append(y)
                if len(live) > 1:
                    live.pop(0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_take_prefers_the_most_recent_free_buffer():
    a = _bigbuf.empty((_bigbuf.MIN_BYTES // 4,), np.float32)
    b = _bigbuf.empty((_bigbuf.MIN_BYTES // 4,), np.float32)
    addr_b = _addr(b)
    del a, b
    c = _bigbuf.empty((_bigbuf.MIN_BYTES // 4,), np.float32)
    assert _addr(c) == addr_b


def test_network_sized_outputs_are_pooled_by_size():
    """Outputs of a few MiB (a batch-8 network's activations) are pooled too: with sizes
    interleaved, a dropped output's buffer serves the next one of its size only, a held one
    never, and trimming to a smaller limit lets the least recently used sizes go."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 128, 128)).astype(np.float32)  # conv outputs: 4-8 MiB
    w1 = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    assert 4 * 16 * 128 * 128 * 4 >= _bigbuf.MIN_BYTES
    want1 = fc.conv2d(x, w1, padding=1, backend="reference")
    want2 = fc.conv2d(x, w2, padding=1, backend="reference")
    held, hits0 = [], fc.buffer_pool_info()["hits"]
    for i in range(6):
        y1 = fc.conv2d(x, w1, padding=1, backend="c")
        y2 = fc.conv2d(x, w2, padding=1, backend="c")
        np.testing.assert_allclose(y1, want1, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(y2, want2, rtol=1e-4, atol=1e-3)
        if i % 2:
            held.append((y1, y2, y1.copy(), y2.copy()))
    addrs = {_addr(a) for h in held for a in h[:2]}
    assert len(addrs) == 2 * len(held)  # a held output's buffer was never handed out again
    for y1, y2, c1, c2 in held:
        assert np.array_equal(y1, c1) and np.array_equal(y2, c2)
    info = fc.buffer_pool_info()
    assert info["hits"] - hits0 >= 4 and info["entries"] >= 6  # 2 per round dropped, reused
    fc.set_buffer_pool_limit(y1.nbytes)
    assert fc.buffer_pool_info()["bytes"] <= y1.nbytes
    y3 = fc.conv2d(x, w2, padding=1, backend="c")
    np.testing.assert_allclose(y3, want2, rtol=1e-4, atol=1e-3)
