"""A CPU stand-in for the few parts of CuPy that fastnn's CUDA backend calls, so that backend and
its kernels are tested on machines without a GPU (CI). It is a test harness, not a GPU:

- device arrays are NumPy arrays of a subclass whose ``data.ptr`` is their host address; mixing
  them with plain NumPy arrays in arithmetic raises, as it does in CuPy;
- ``RawModule`` compiles ``fastnn/backend/cuda_kernels.cu`` as C++ (g++) with ``blockIdx`` and
  friends as globals, and a launch runs every thread of the grid one after another. That is
  exact for these kernels, which use no shared memory, barriers, warps or atomics (a rule the
  kernel file states);
- every kernel argument is checked against the C parameter type, as the bytes CuPy would pack
  (np.int64 for long long, a device array of the pointee's dtype for a pointer, ...);
- cuBLAS ``sgemm``/``dgemm`` compute the column-major product on the same memory with NumPy.

What it cannot show: speed, launch limits, real-device numerics (FMA contraction, libdevice's
exp), memory errors that a GPU would report differently.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import types

import numpy as np


class DevArray(np.ndarray):
    """A 'device' array: NumPy memory with CuPy's ``data.ptr``."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        for a in inputs + (out or ()):
            if isinstance(a, np.ndarray) and not isinstance(a, DevArray) and a.ndim > 0:
                raise TypeError("emulated CuPy: a NumPy (host) array in an operation on device arrays")
        plain = [a.view(np.ndarray) if isinstance(a, DevArray) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if isinstance(result, np.ndarray):
            return result.view(DevArray)
        return result


def _dev(a):
    return a.view(DevArray)


def empty(shape, dtype=np.float32):
    return _dev(np.empty(shape, dtype=dtype))


def zeros(shape, dtype=np.float32):
    return _dev(np.zeros(shape, dtype=dtype))


def asarray(x, dtype=None):
    if isinstance(x, DevArray) and (dtype is None or np.dtype(dtype) == x.dtype):
        return x
    return _dev(np.array(np.asarray(x), dtype=dtype, copy=True))


def asnumpy(x):
    return np.array(np.asarray(x).view(np.ndarray), copy=True)


add = np.add

# ---- kernels -----------------------------------------------------------------------------------

_PRELUDE = r"""
#include <cmath>
struct fnn_dim3 { unsigned x, y, z; };
static fnn_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__ inline
"""
_SIG = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)')
_SCALARS = {"long long": (np.int64, ctypes.c_longlong), "int": (np.int32, ctypes.c_int),
            "unsigned int": (np.uint32, ctypes.c_uint), "unsigned long long": (np.uint64, ctypes.c_ulonglong),
            "float": (np.float32, ctypes.c_float), "double": (np.float64, ctypes.c_double)}
_POINTEES = {"float": np.float32, "double": np.float64, "long long": np.int64, "int": np.int32}


def _params(text):
    out = []
    for p in text.split(","):
        p = " ".join(p.replace("*", " * ").split())
        name = p.split()[-1]
        ctype = p[:len(p) - len(name)].strip()
        pointer = ctype.endswith("*")
        base = ctype.rstrip("* ").replace("const ", "").strip()
        out.append((name, base, pointer))
    return out


def _compile(code: str):
    kernels = {m.group(1): _params(m.group(2)) for m in _SIG.finditer(code)}
    launchers = []
    for name, params in kernels.items():
        decl = ", ".join(f"{'const void *' if ptr else base + ' '}{pn}" for pn, base, ptr in params)
        call = ", ".join(f"({base} *){pn}" if ptr else pn for pn, base, ptr in params)
        launchers.append(
            f'extern "C" void emu_{name}(unsigned gx, unsigned bx, {decl}) {{\n'
            f"  gridDim = {{gx, 1, 1}}; blockDim = {{bx, 1, 1}};\n"
            f"  for (unsigned emu_b = 0; emu_b < gx; emu_b++) for (unsigned emu_t = 0; emu_t < bx; emu_t++) {{\n"
            f"    blockIdx = {{emu_b, 0, 0}}; threadIdx = {{emu_t, 0, 0}}; {name}({call}); }}\n}}\n")
    source = _PRELUDE + code + "\n" + "".join(launchers)
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), "fastnn_cuda_emu")
    os.makedirs(folder, exist_ok=True)
    lib = os.path.join(folder, f"kernels_{digest}.so")
    if not os.path.exists(lib):
        src = os.path.join(folder, f"kernels_{digest}.cpp")
        with open(src, "w") as f:
            f.write(source)
        tmp = lib + f".{os.getpid()}"
        subprocess.run(["g++", "-std=c++14", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-Wall", "-Werror",
                        "-Wno-unused-function", "-Wno-div-by-zero", src, "-o", tmp], check=True)
        os.replace(tmp, lib)
    return ctypes.CDLL(lib), kernels


class _Function:
    def __init__(self, lib, name, params):
        self.name, self.params = name, params
        self.fn = getattr(lib, f"emu_{name}")
        self.fn.restype = None
        self.fn.argtypes = [ctypes.c_uint, ctypes.c_uint] + [
            ctypes.c_void_p if ptr else _SCALARS[base][1] for _, base, ptr in params]

    def __call__(self, grid, block, args):
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(self.params)} arguments expected, got {len(args)}")
        values = []
        for (pname, base, ptr), a in zip(self.params, args):
            where = f"{self.name}({pname})"
            if ptr:
                if isinstance(a, np.uint64) and a == 0:
                    values.append(None)
                    continue
                if not isinstance(a, DevArray):
                    raise TypeError(f"{where}: a device array expected, got {type(a).__name__}")
                if a.dtype != _POINTEES[base]:
                    raise TypeError(f"{where}: {base} * expected, got an array of {a.dtype}")
                values.append(a.data.ptr)
            else:
                want = _SCALARS[base][0]
                if type(a) is not want:
                    raise TypeError(f"{where}: {want.__name__} expected (the bytes of a {base}), got "
                                    f"{type(a).__name__}")
                values.append(a.item())
        if len(grid) != 1 or len(block) != 1 or grid[0] < 1 or block[0] < 1 or block[0] > 1024:
            raise ValueError(f"{self.name}: bad launch {grid} x {block}")
        self.fn(int(grid[0]), int(block[0]), *values)


class RawModule:
    _cache: dict = {}

    def __init__(self, code, options=()):
        if code not in RawModule._cache:
            RawModule._cache[code] = _compile(code)
        self.lib, self.kernels = RawModule._cache[code]
        self.options = tuple(options)

    def get_function(self, name):
        if name not in self.kernels:
            raise AttributeError(f"no kernel {name}")
        return _Function(self.lib, name, self.kernels[name])


# ---- cuBLAS ------------------------------------------------------------------------------------

def _colmajor(ptr, dtype, rows, cols, ld):
    """The column-major rows x cols matrix at ptr with leading dimension ld, as a NumPy view."""
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), dtype)
    count = (cols - 1) * ld + rows
    buf = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(ptr)
    flat = np.frombuffer(buf, dtype=dtype, count=count)
    item = np.dtype(dtype).itemsize
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))


def _gemm(dtype, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    al, be = ctype.from_address(alpha).value, ctype.from_address(beta).value
    for ld, rows in ((lda, k if transa else m), (ldb, n if transb else k), (ldc, m)):
        if ld < max(1, rows):
            raise ValueError("cublas: leading dimension smaller than the rows")
    opa = _colmajor(a, dtype, k, m, lda).T if transa else _colmajor(a, dtype, m, k, lda)
    opb = _colmajor(b, dtype, n, k, ldb).T if transb else _colmajor(b, dtype, k, n, ldb)
    cv = _colmajor(c, dtype, m, n, ldc)
    prod = al * (opa.astype(np.float64) @ opb.astype(np.float64))
    if be != 0:                     # cuBLAS reads C only when beta != 0
        prod = prod + be * cv
    cv[...] = prod


def sgemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    _gemm(np.float32, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


def dgemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    _gemm(np.float64, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


def install(monkeypatch):
    """Put the emulated ``cupy`` (with ``cupy.cuda``, ``cupy.cuda.cublas``) in sys.modules."""
    cupy = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")
    cublas = types.ModuleType("cupy.cuda.cublas")
    cublas.sgemm, cublas.dgemm = sgemm, dgemm
    cuda.cublas = cublas
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    cuda.device = types.SimpleNamespace(get_cublas_handle=lambda: 0)
    for attr in ("empty", "zeros", "asarray", "asnumpy", "add", "RawModule", "DevArray"):
        setattr(cupy, attr, getattr(sys.modules[__name__], attr))
    cupy.ndarray = DevArray
    cupy.cuda = cuda
    for name, mod in (("cupy", cupy), ("cupy.cuda", cuda), ("cupy.cuda.cublas", cublas)):
        monkeypatch.setitem(sys.modules, name, mod)
    return cupy
