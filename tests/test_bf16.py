"""bfloat16: conversion, the bf16 GEMM variants against the reference numerics, the error bound
against float64, fnn.ops.matmul(compute="bfloat16"), and the "mixed_bfloat16" policy end to end
(layers, training, weight copies refreshed once per step, plans, model files, CUDA emulator)."""
from __future__ import annotations

import math

import cuda_emu
import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core
from fastnn.backend import cpu, numpy_ref
from fastnn.layers import Conv2D, Dense, Flatten, MaxPool2D

BF16 = ("ref", "avx512bf16", "amx")


@pytest.fixture(params=BF16)
def bf16_variant(request):
    """Each bf16 GEMM variant this CPU runs (others skipped with the reason); restores the choice."""
    name = request.param
    if BF16.index(name) > BF16.index(_core.bf16_best()):
        pytest.skip(f"bf16 variant {name!r} needs a CPU with "
                    f"{'AMX-BF16 (amx_bf16 in /proc/cpuinfo)' if name == 'amx' else 'AVX512-BF16 (avx512_bf16)'}; "
                    f"this one's best is {_core.bf16_best()!r}")
    saved = _core.bf16_forced()
    try:
        _core.bf16_set(name)
        yield name
    finally:
        _core.bf16_set(saved)


def rounded(x):
    """The bf16 value of each float32 of x (reference: numpy bit arithmetic)."""
    return numpy_ref.round_bf16(np.asarray(x, np.float32), np.empty(np.shape(x), np.float32))


def bits16(x):
    out = np.empty(x.size, np.uint16)
    _core.f32_to_bf16(np.ascontiguousarray(x, np.float32).reshape(-1), out)
    return out.reshape(x.shape)


# ---- conversion ----------------------------------------------------------------------------------

def test_round_to_nearest_even_and_specials():
    one = 0x3F80
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -(1 + 2**-8 + 2**-20), np.inf, -np.inf,
                  3.4e38, -3.4e38, 3.38e38, 0.0, -0.0, 1e-40], np.float32)
    want = [one, one, one + 2, one + 1, 0x8000 | (one + 1), 0x7F80, 0xFF80, 0x7F80, 0xFF80, 0x7F7E, 0, 0x8000, 0x0001]
    assert [int(v) for v in bits16(x)] == want
    nan = np.array([np.nan, -np.nan, np.float32(np.nan) * 0], np.float32)
    nan_bits = np.array([0x7FC00000, 0xFF800001, 0x7F800001], np.uint32).view(np.float32)
    for v in (bits16(nan), bits16(nan_bits)):
        assert all((int(b) & 0x7F80) == 0x7F80 and (int(b) & 0x7F) != 0 for b in v)   # still NaN (quiet)
    back = np.empty(len(want), np.float32)
    _core.bf16_to_f32(np.array(want, np.uint16), back)
    same = np.empty_like(x)
    _core.round_bf16(x, same)
    np.testing.assert_array_equal(back, same)


def test_conversion_matches_numpy_ref_and_torch_on_random_bits(rng):
    u = rng.integers(0, 2**32, 200_001, dtype=np.uint64).astype(np.uint32)
    x = u.view(np.float32)
    got = np.empty_like(x)
    _core.round_bf16(x, got, 2)
    want = rounded(x)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)) or \
        np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(x))
    torch = pytest.importorskip("torch")
    finite = np.isfinite(x)
    t = torch.from_numpy(x[finite].copy()).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(got[finite], t)


# ---- the GEMM ------------------------------------------------------------------------------------

EDGE = [(1, 1, 1), (1, 7, 3), (2, 33, 5), (3, 1, 2), (13, 31, 1), (14, 32, 2), (15, 33, 3), (29, 65, 513),
        (17, 16, 1031), (100, 70, 130), (64, 300, 1200)]


@pytest.mark.parametrize("m, n, k", EDGE)
@pytest.mark.parametrize("ta, tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_matches_rounded_float64(bf16_variant, rng, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    A, B = rounded(a).astype(np.float64), rounded(b).astype(np.float64)
    prod = (A.T if ta else A) @ (B.T if tb else B)
    scale = (np.abs(A.T if ta else A) @ np.abs(B.T if tb else B)) + 1
    for stored in (False, True):
        aa, bb = (bits16(a), bits16(b)) if stored else (a, b)
        out = np.full((m, n), np.nan, np.float32)
        _core.gemm_bf16(aa, bb, out, ta, tb, 1.0, 0.0, bias, False, True, 2)
        want = np.maximum(prod + bias, 0)
        assert np.all(np.abs(out - want) <= 1e-6 * k * scale), (stored, np.abs(out - want).max())
        out = c0.copy()
        _core.gemm_bf16(aa, bb, out, ta, tb, -1.5, 0.5, None, False, False, 2)
        assert np.all(np.abs(out - (-1.5 * prod + 0.5 * c0)) <= 1e-6 * k * 1.5 * scale)


def test_gemm_row_bias_leading_dimensions_and_views(bf16_variant, rng):
    big = rng.standard_normal((70, 90)).astype(np.float32)
    a, b = big[3:20, 5:70], big[1:66, 7:30]           # rows further apart than their width
    out_big = np.zeros((30, 50), np.float32)
    out = out_big[2:19, 4:27]
    bias = rng.standard_normal(17).astype(np.float32)
    _core.gemm_bf16(a, b, out, False, False, 1.0, 0.0, bias, True, False, 1)
    want = rounded(a).astype(np.float64) @ rounded(b) + bias[:, None]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert np.all(out_big[:2] == 0) and np.all(out_big[:, :4] == 0) and np.all(out_big[:, 27:] == 0)


@pytest.mark.parametrize("m, n, k", [(64, 300, 1200), (257, 129, 65), (15, 520, 1030)])
def test_gemm_same_bits_for_any_thread_count(bf16_variant, rng, m, n, k):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    outs = []
    for nt in (1, 2, 3, 4):
        out = np.empty((m, n), np.float32)
        _core.gemm_bf16(a, b, out, False, False, 1.0, 0.0, None, False, False, nt)
        outs.append(out)
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])


@pytest.mark.parametrize("k", [1, 16, 255, 1024, 4099])
def test_gemm_error_within_sqrt_k_2_pow_minus_8_of_float64(bf16_variant, rng, k):
    """Normwise, the issue's criterion: ||C - C64|| / ||C64|| <= sqrt(k) 2^-8. Elementwise, rigorously:
    each product carries two bf16 roundings (at most 2^-8 relative each: 8 significant bits), so a sum
    is off by at most ~2^-7 sum|a_p b_p| <= 2^-7 sqrt(k) ||a o b||_2, plus float32 accumulation."""
    m, n = 37, 45
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = fnn.ops.matmul(a, b, compute="bfloat16")
    exact = a.astype(np.float64) @ b.astype(np.float64)
    bound = math.sqrt(k) * 2.0**-8
    ab2 = np.sqrt((a.astype(np.float64) ** 2) @ (b.astype(np.float64) ** 2))     # ||a_i o b_j||_2
    assert np.all(np.abs(out - exact) <= 2 * bound * ab2 * 1.01 + k * 2.0**-23 * ab2 * math.sqrt(k))
    assert np.linalg.norm(out - exact) / np.linalg.norm(exact) <= bound
    # and it is bf16, not float32: the error is far above float32's
    if k >= 16:
        assert np.linalg.norm(out - exact) / np.linalg.norm(exact) > 2.0**-14


def test_ops_matmul_compute_argument(rng):
    a = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal((7, 3)).astype(np.float32)
    got = fnn.ops.matmul(a, b, compute="bfloat16")
    np.testing.assert_allclose(got, rounded(a).astype(np.float64) @ rounded(b), rtol=1e-6, atol=1e-6)
    out = np.empty((3, 5), np.float32)
    assert fnn.ops.matmul(b, a, out=out, trans_a=True, trans_b=True, compute="bfloat16") is out
    np.testing.assert_allclose(out, got.T, rtol=1e-6, atol=1e-6)
    assert np.array_equal(fnn.ops.matmul(a, b), fnn.ops.matmul(a, b, compute="float32"))
    with pytest.raises(ValueError, match="compute"):
        fnn.ops.matmul(a, b, compute="float16")
    with pytest.raises(TypeError, match="float32"):
        fnn.ops.matmul(a.astype(np.float64), b.astype(np.float64), compute="bfloat16")


def test_variant_names_and_errors():
    assert _core.bf16_get() in BF16
    with pytest.raises(ValueError, match="bf16 variant"):
        _core.bf16_set("avx9000")
    assert fnn.show_config()["bf16_variant"] == _core.bf16_get()


def test_amx_kernel_skips_with_reason_here():
    if "amx_bf16" in open("/proc/cpuinfo").read() and _core.bf16_best() == "amx":
        return      # run on this CPU by the variant-parametrised tests above
    with pytest.raises(ValueError, match="does not support 'amx'"):
        _core.bf16_set("amx")


def test_bf16_fallback_note_in_show_config():
    note = fnn.show_config()["bf16_fallback"]
    assert note is None or note.startswith("amx: ")
    assert (note or "") == _core.bf16_note()


@pytest.fixture
def amx_kernel():
    """The real AMX kernel (csrc/x86/amx), or a skip with the reason: it runs only on a CPU with AMX
    (amx_bf16 and amx_tile in /proc/cpuinfo) with a build whose compiler had -mamx-bf16, once the OS
    granted the tile state. Elsewhere the C harness tests it emulated (test_gemm.py::test_c_gemm_harness)."""
    if _core.bf16_best() != "amx":
        pytest.skip(f"the AMX kernel needs a CPU with AMX-BF16 (amx_bf16 in /proc/cpuinfo) and a build with "
                    f"-mamx-bf16; this one's best bf16 variant is {_core.bf16_best()!r} (the kernel is tested "
                    f"emulated by the C harness, test_gemm.py::test_c_gemm_harness)")
    saved = _core.bf16_forced()
    try:
        _core.bf16_set("amx")
        note = _core.bf16_note()
        if "refused" in note:
            pytest.skip(f"the OS refused AMX here: {note}")
        # a failed first-use self-check is a bug in the kernel, not a property of the machine
        assert note == "", note
        assert fnn.show_config()["bf16_variant"] == "amx" and fnn.show_config()["bf16_fallback"] is None
        yield
    finally:
        _core.bf16_set(saved)


AMX_EDGE = [(m, n, k) for m in (3, 15, 16, 17, 32, 33) for n in (17, 31, 32, 33, 47) for k in (1, 2, 31, 32, 33)] + \
    [(100, 70, 130), (261, 97, 1031), (67, 530, 577), (300, 545, 1100), (1024, 1024, 1024)]


def test_amx_kernel_against_ref(amx_kernel, rng):
    """Each edge shape (a partial 32 x 32 block in m and n, k around a 32-value tile step, two KC
    blocks, the MC and NC edges) on the AMX kernel against the ref variant: the same rounded operands
    and float32 sums in another order, so within the float32 accumulation bound of each other."""
    for i, (m, n, k) in enumerate(AMX_EDGE):
        ta, tb = i % 2 == 1, i % 4 >= 2
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        bias = rng.standard_normal(m if i % 3 == 0 else n).astype(np.float32)
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        A, B = rounded(a).astype(np.float64), rounded(b).astype(np.float64)
        scale = np.abs(A.T if ta else A) @ np.abs(B.T if tb else B) + np.abs(c0) + np.abs(bias).max()
        outs = {}
        for name in ("ref", "amx"):
            _core.bf16_set(name)
            out = c0.copy()
            _core.gemm_bf16(a, b, out, ta, tb, 0.5, 0.75, bias, i % 3 == 0, i % 5 == 0, 2)
            outs[name] = out
        assert np.all(np.abs(outs["amx"] - outs["ref"]) <= 2 * (k + 4) * 2.0**-24 * scale), (m, n, k, ta, tb)
        if m >= 3 and n > 16:   # went through the AMX kernel, not the small-shape ref path
            one = c0.copy()
            _core.gemm_bf16(bits16(a), bits16(b), one, ta, tb, 0.5, 0.75, bias, i % 3 == 0, i % 5 == 0, 1)
            assert np.array_equal(one, outs["amx"]), "bf16-stored operands or 1 thread changed the bits"


# ---- the "mixed_bfloat16" policy -------------------------------------------------------------

def test_policy_names(rng):
    model = fnn.Sequential([Dense(3)], input_shape=(4,), dtype="mixed_bfloat16")
    assert model.dtype == np.float32 and model.dtype_policy == "mixed_bfloat16"
    assert all(layer.mixed and layer.dtype == np.float32 for layer in model.layers)
    assert "dtype: mixed_bfloat16" in model.summary()
    fnn.set_default_dtype("mixed_bfloat16")
    assert fnn.Sequential([Dense(2)], input_shape=(3,)).dtype_policy == "mixed_bfloat16"
    assert fnn.get_default_dtype() == np.float32
    fnn.set_default_dtype("float32")
    assert fnn.Sequential([Dense(2)], input_shape=(3,)).dtype_policy == "float32"
    with pytest.raises(TypeError, match="mixed_bfloat16"):
        fnn.Sequential([Dense(2)], dtype="bfloat16")
    layer = Dense(2)
    fnn.Sequential([layer], input_shape=(3,), dtype="float32")
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        fnn.Sequential([layer], input_shape=(3,), dtype="mixed_bfloat16")


def test_dense_forward_backward_use_rounded_operands(bf16_variant, rng):
    layer = Dense(37, activation="relu")
    fnn.Sequential([layer], input_shape=(29,), dtype="mixed_bfloat16")
    x = rng.standard_normal((23, 29)).astype(np.float32)
    dy = rng.standard_normal((23, 37)).astype(np.float32)
    w, b = layer.get_weights()
    y = layer.forward(x)
    z = rounded(x).astype(np.float64) @ rounded(w) + b
    np.testing.assert_allclose(y, np.maximum(z, 0), rtol=1e-5, atol=1e-5)
    dx = layer.backward(dy)
    dz = np.where(z > 0, dy, 0).astype(np.float32)
    np.testing.assert_allclose(layer.grads[0], rounded(x).T.astype(np.float64) @ rounded(dz), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads[1], dz.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, rounded(dz).astype(np.float64) @ rounded(w).T, rtol=1e-5, atol=1e-5)
    # and differs from the float32 layer by bf16, not float32, amounts
    ref = Dense(37, activation="relu")
    fnn.Sequential([ref], input_shape=(29,), dtype="float32")
    ref.set_weights([w, b])
    assert 1e-4 < np.abs(ref.forward(x) - y).max() < 0.2


def test_conv2d_forward_backward_use_rounded_operands(bf16_variant, rng):
    layer = Conv2D(5, 3, padding=1, activation="relu")
    fnn.Sequential([layer], input_shape=(3, 9, 8), dtype="mixed_bfloat16")
    x = rng.standard_normal((4, 3, 9, 8)).astype(np.float32)
    dy = rng.standard_normal((4, 5, 9, 8)).astype(np.float32)
    w, b = layer.get_weights()
    y = layer.forward(x)
    dx = layer.backward(dy)
    r = numpy_ref
    xq, wq = rounded(x).astype(np.float64), rounded(w).astype(np.float64)
    z = r.conv2d_fwd(xq, wq, b.astype(np.float64), np.empty((4, 5, 9, 8)), (1, 1), (1, 1, 1, 1))
    np.testing.assert_allclose(y, np.maximum(z, 0), rtol=1e-5, atol=1e-5)
    dz = rounded(np.where(z > 0, dy, 0)).astype(np.float64)
    dw, db, dxx = np.empty_like(wq), np.empty(5), np.empty_like(xq)
    r.conv2d_bwd(xq, wq, dz, dw, db, dxx, (1, 1), (1, 1, 1, 1))
    np.testing.assert_allclose(layer.grads[0], dw, rtol=1e-5, atol=1e-4)
    # the bias gradient sums the float32 dz (as Dense's)
    np.testing.assert_allclose(layer.grads[1], np.where(z > 0, dy, 0).sum((0, 2, 3)), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, dxx, rtol=1e-5, atol=1e-5)


# (N, C, H, W), (F, kh, kw), stride, padding (top, bottom, left, right): 1 and 3 channels, odd sizes,
# stride 2, "same" (asymmetric for an even kernel) and "valid", batch 1, a 1x1 kernel, more filters
# than one register tile (14), output rows wider than one vector (16), every convolution mode.
CONV_EDGE = [((2, 1, 7, 9), (3, 3, 3), (1, 1), (1, 1, 1, 1)), ((3, 3, 9, 8), (5, 3, 3), (1, 1), (1, 1, 1, 1)),
             ((1, 4, 11, 13), (6, 3, 3), (2, 2), (1, 1, 1, 1)), ((2, 2, 6, 5), (17, 3, 2), (1, 1), (0, 0, 0, 0)),
             ((2, 3, 8, 8), (4, 2, 2), (1, 1), (0, 1, 0, 1)), ((1, 16, 20, 21), (16, 3, 3), (1, 1), (1, 1, 1, 1)),
             ((4, 8, 14, 14), (30, 1, 1), (1, 1), (0, 0, 0, 0)), ((3, 5, 33, 7), (9, 3, 3), (1, 1), (1, 1, 1, 1)),
             ((1, 3, 32, 32), (32, 3, 3), (1, 1), (1, 1, 1, 1)), ((2, 32, 16, 16), (64, 3, 3), (1, 1), (1, 1, 1, 1)),
             ((2, 7, 9, 9), (5, 5, 5), (1, 1), (2, 2, 2, 2)), ((1, 1, 5, 5), (1, 3, 3), (2, 1), (0, 0, 0, 0))]


def _conv_bf16(x, w, b, dy, stride, pad, relu, n_threads):
    """y, dw, db, dx of the bf16 convolution (the C kernels, fused ReLU when relu)."""
    y = np.empty(dy.shape, np.float32)
    _core.conv2d_fwd(x, w, b, y, stride, pad, relu, None, n_threads, True)
    dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
    _core.conv2d_bwd(x, w, y, dy, dw, db, dx, stride, pad, relu, None, n_threads, True)
    return {"y": y, "dw": dw, "db": db, "dx": dx}


def _conv_inputs(rng, xs, fk, stride, pad):
    f, kh, kw = fk
    oh = (xs[2] + pad[0] + pad[1] - kh) // stride[0] + 1
    ow = (xs[3] + pad[2] + pad[3] - kw) // stride[1] + 1
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal((f, xs[1], kh, kw)) / math.sqrt(xs[1] * kh * kw)).astype(np.float32)
    return x, w, rng.standard_normal(f).astype(np.float32), rng.standard_normal((xs[0], f, oh, ow)).astype(np.float32)


def _conv_f64(x, w, b, dy, stride, pad, relu_mask=None):
    """y (before the ReLU), dw, db, dx in float64 of the given operands, and the same with their absolute
    values (the scale of each sum, for the bounds); dy masked by relu_mask > 0 when given."""
    r, out = numpy_ref, {}
    g = dy if relu_mask is None else np.where(relu_mask > 0, dy, 0)
    for key, (xx, ww, gg, bb) in {"": (x, w, g, b), "abs": (np.abs(x), np.abs(w), np.abs(g), np.abs(b))}.items():
        xx, ww, gg, bb = (np.asarray(v, np.float64) for v in (xx, ww, gg, bb))
        y = r.conv2d_fwd(xx, ww, bb, np.empty(dy.shape), stride, pad)
        dw, db, dx = np.empty_like(ww), np.empty(len(bb)), np.empty_like(xx)
        r.conv2d_bwd(xx, ww, gg, dw, db, dx, stride, pad)
        out.update({key + k: v for k, v in {"y": y, "dw": dw, "db": db, "dx": dx}.items()})
    return out


@pytest.mark.parametrize("xs, fk, stride, pad", CONV_EDGE)
def test_conv2d_bf16_matches_rounded_float64_and_bound(bf16_variant, rng, xs, fk, stride, pad):
    """Each output is the float64 sum over the bf16-rounded operands up to float32 accumulation (k
    terms: at most about k 2^-24 of the sum of |terms|), hence within sqrt(k) 2^-8 of the exact
    float64 result normwise (two bf16 roundings per product); the bias gradient is the float32 sum
    of the float32 (masked) dy."""
    x, w, b, dy = _conv_inputs(rng, xs, fk, stride, pad)
    for relu in (False, True):
        got = _conv_bf16(x, w, b, dy, stride, pad, relu, 1)
        q = _conv_f64(rounded(x), rounded(w), b, rounded(dy), stride, pad)
        mask = q["y"] if relu else None
        if relu:        # the ReLU mask is taken from the float32 y; rounding dy commutes with masking it
            mask = got["y"]
            q = _conv_f64(rounded(x), rounded(w), b, rounded(dy), stride, pad, mask)
        exact = _conv_f64(x, w, b, dy, stride, pad, mask)
        ks = {"y": xs[1] * fk[1] * fk[2] + 1, "dw": dy.size // fk[0], "db": dy.size // fk[0],
              "dx": fk[0] * fk[1] * fk[2]}
        q["db"], q["absdb"] = exact["db"], exact["absdb"]       # db sums the float32 dy
        for key, k in ks.items():
            want = np.maximum(q["y"], 0) if key == "y" and relu else q[key]
            tol = (k + 2) * 2.0**-23 * q["abs" + key] + 1e-30
            assert np.all(np.abs(got[key] - want) <= tol), (key, relu, float(np.max(np.abs(got[key] - want) / tol)))
            if key == "db":
                continue
            ex = np.maximum(exact["y"], 0) if key == "y" and relu else exact[key]
            assert np.linalg.norm(got[key] - ex) <= math.sqrt(k) * 2.0**-8 * np.linalg.norm(exact["abs" + key])


@pytest.mark.parametrize("xs, fk, stride, pad", CONV_EDGE)
def test_conv2d_bf16_same_bits_for_any_thread_count(bf16_variant, rng, xs, fk, stride, pad):
    x, w, b, dy = _conv_inputs(rng, xs, fk, stride, pad)
    one, two = (_conv_bf16(x, w, b, dy, stride, pad, True, nt) for nt in (1, 2))
    for key in one:
        assert np.array_equal(one[key], two[key]), key


@pytest.mark.parametrize("xs, fk, stride, pad", CONV_EDGE)
def test_conv2d_bf16_variants_agree(rng, xs, fk, stride, pad):
    """ref (round, multiply in float32) against avx512bf16 (pairs, VDPBF16PS): the same products,
    sums in another order, so within twice the float32 accumulation bound of each other."""
    if _core.bf16_best() == "ref":
        pytest.skip("needs a CPU with AVX512-BF16 (avx512_bf16 in /proc/cpuinfo) for a second variant")
    x, w, b, dy = _conv_inputs(rng, xs, fk, stride, pad)
    saved, outs = _core.bf16_forced(), []
    try:
        for name in ("ref", "avx512bf16"):
            _core.bf16_set(name)
            outs.append(_conv_bf16(x, w, b, dy, stride, pad, False, 2))
    finally:
        _core.bf16_set(saved)
    scale = _conv_f64(rounded(x), rounded(w), b, rounded(dy), stride, pad)
    scale["absdb"] = _conv_f64(x, w, b, dy, stride, pad)["absdb"]
    ks = {"y": xs[1] * fk[1] * fk[2] + 1, "dw": dy.size // fk[0], "db": dy.size // fk[0], "dx": fk[0] * fk[1] * fk[2]}
    for key, k in ks.items():
        assert np.all(np.abs(outs[0][key] - outs[1][key]) <= 2 * (k + 2) * 2.0**-23 * scale["abs" + key] + 1e-30), key


def test_conv2d_bf16_argument_checks(rng):
    x = np.zeros((1, 2, 5, 5))
    w = np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match="float32"):
        _core.conv2d_fwd(x, w, None, np.zeros((1, 3, 3, 3)), (1, 1), (0, 0, 0, 0), False, None, 1, True)
    with pytest.raises(ValueError, match="float32"):
        _core.conv2d_bwd(x, w, None, np.zeros((1, 3, 3, 3)), np.zeros_like(w), None, None, (1, 1), (0, 0, 0, 0),
                         False, None, 1, True)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    with pytest.raises(ValueError, match="workspace"):
        _core.conv2d_fwd(x32, w32, None, np.zeros((1, 3, 3, 3), np.float32), (1, 1), (0, 0, 0, 0), False,
                         np.zeros(1, np.float32), 1, True)


def _cnn(dtype):
    return fnn.Sequential([Conv2D(4, 3, activation="relu"), MaxPool2D(2), Flatten(), Dense(16, activation="relu"),
                           Dense(3, activation="softmax")], input_shape=(1, 8, 8), dtype=dtype)


def test_weights_converted_once_per_step_and_after_set_weights(rng, monkeypatch):
    fnn.seed(3)
    model = _cnn("mixed_bfloat16")
    model.compile("adam", "sparse_categorical_crossentropy")
    calls = []
    real = cpu.bf16_weight
    monkeypatch.setattr(cpu, "bf16_weight", lambda w, prev=None: calls.append(w.shape) or real(w, prev))
    x = rng.standard_normal((40, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, shuffle=False)
    assert len(calls) == 4 * 3           # 4 steps x 3 GEMM layers, whatever the products per step
    calls.clear()
    model.predict(x[:3])
    model.predict(x)
    assert len(calls) == 3               # once after the last step, then reused
    calls.clear()
    p0 = model.predict(x)
    assert calls == []
    w = model.get_weights()
    w[-2] = w[-2] * 0                    # the last Dense kernel: predictions become softmax(bias)
    model.set_weights(w)
    want = np.exp(w[-1]) / np.exp(w[-1]).sum()
    np.testing.assert_allclose(model.predict(x), np.broadcast_to(want, (40, 3)), rtol=1e-5)
    np.testing.assert_allclose(model.predict(x[:2]), np.broadcast_to(want, (2, 3)), rtol=1e-5)   # the plan path
    assert not np.allclose(p0, want, rtol=1e-3)


def test_predict_plan_and_layer_path_agree_and_follow_training(rng):
    fnn.seed(4)
    model = _cnn("mixed_bfloat16")
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    for _ in range(2):
        planned = model.predict(x[:2])           # small batch: an inference plan
        h = x[:2]
        for layer in model.layers:
            h = layer._forward(h, False, False)
        np.testing.assert_array_equal(planned, h)
        model.train_on_batch(x, np.array([0, 1, 2, 0, 1, 2]))


def test_model_file_keeps_float32_weights_and_policy(tmp_path, rng):
    fnn.seed(5)
    model = _cnn("mixed_bfloat16")
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.standard_normal((20, 1, 8, 8)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 20), epochs=1, batch_size=5, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as z:
        assert all(z[k].dtype == np.float32 for k in z.files if k.startswith("layer"))
    loaded = fnn.load_model(path)
    assert loaded.dtype_policy == "mixed_bfloat16"
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_mixed_training_tracks_float32_training(rng):
    """The same model and data in both policies: losses stay close (bf16 noise, not divergence)."""
    x = rng.standard_normal((256, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, 2:5, 2:5].sum((1, 2)) > 0).astype(np.int64) + (x[:, 0, 5:, 5:].sum((1, 2)) > 1)
    hist = {}
    for dt in ("float32", "mixed_bfloat16"):
        fnn.seed(6)
        model = _cnn(dt)
        model.compile(fnn.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        hist[dt] = model.fit(x, y, batch_size=32, epochs=15, verbose=0).history["loss"]
    assert hist["mixed_bfloat16"][-1] < 0.6 * hist["mixed_bfloat16"][0]
    assert abs(hist["mixed_bfloat16"][-1] - hist["float32"][-1]) < 0.1


@pytest.mark.parametrize("name", ["digits", "digits_cnn"])
def test_demo_models_reach_float32_accuracy_within_half_a_point(name, capsys):
    from fastnn import demo
    acc = {}
    for dt in ("float32", "mixed_bfloat16"):
        fnn.set_default_dtype(dt)
        fnn.seed(0)
        acc[dt] = getattr(demo, name)(verbose=0)
    assert acc["mixed_bfloat16"] >= acc["float32"] - 0.005, acc


def test_cuda_backend_applies_the_same_policy(rng, monkeypatch):
    """On the CUDA backend (CuPy emulator) the layers round the same operands and multiply in float32:
    the same results as the CPU's bf16 kernels, to float32 rounding."""
    cuda_emu.install(monkeypatch)
    from fastnn.backend import cuda as cuda_backend
    monkeypatch.setattr(cuda_backend, "_state", {"cp": None, "module": None, "fns": {}, "geo": {}, "scratch": {}})
    fnn.seed(7)
    cpu_model = _cnn("mixed_bfloat16")
    cpu_model.compile("sgd", "sparse_categorical_crossentropy")
    fnn.seed(7)
    gpu_model = _cnn("mixed_bfloat16")
    gpu_model.compile("sgd", "sparse_categorical_crossentropy")
    gpu_model.to("cuda")
    x = rng.standard_normal((12, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    for _ in range(2):
        lc = cpu_model.train_on_batch(x, y)
        lg = gpu_model.train_on_batch(x, y)
        assert abs(lc - lg) < 1e-4
    gpu_model.to("cpu")
    for wc, wg in zip(cpu_model.get_weights(), gpu_model.get_weights()):
        np.testing.assert_allclose(wg, wc, rtol=1e-4, atol=1e-5)
    # and the emulated device really rounds: a float32 model differs by more
    xd = cuda_emu.DevArray(x.reshape(12, -1)[:, :64].copy()) if hasattr(cuda_emu, "DevArray") else None
    if xd is not None:
        r = cuda_backend.round_bf16(xd, cuda_backend.empty((12, 64), np.float32))
        np.testing.assert_array_equal(cuda_backend.to_numpy(r), rounded(x.reshape(12, -1)[:, :64]))
