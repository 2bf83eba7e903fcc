"""A CPU stand-in for the few parts of CuPy that fastnn's CUDA backend calls, so that backend and
its kernels are tested on machines without a GPU (CI). It is a test harness, not a GPU:

- device arrays wrap NumPy memory in an object that is not a NumPy array: as with CuPy,
  ``np.asarray`` on one raises, host arrays are refused in arithmetic and assignment, NumPy
  functions dispatch to it (NEP 18), and ``data.ptr`` is the host address;
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


def _unwrap(v, where="an operation"):
    """NumPy views of device arrays inside v (tuples/lists/dicts too); host arrays are refused."""
    if isinstance(v, DevArray):
        return v._a
    if isinstance(v, np.ndarray) and v.ndim > 0:
        raise TypeError(f"emulated CuPy: a NumPy (host) array in {where} on device arrays")
    if isinstance(v, (list, tuple)):
        return type(v)(_unwrap(x, where) for x in v)
    if isinstance(v, dict):
        return {k: _unwrap(x, where) for k, x in v.items()}
    return v


def _wrap(v):
    if isinstance(v, np.ndarray):
        return DevArray(v)
    if isinstance(v, tuple):
        return tuple(_wrap(x) for x in v)
    return v


class DevArray:
    """A 'device' array: NumPy memory behind an object that, like cupy.ndarray, is not a NumPy
    array (np.asarray on it raises), refuses host arrays in arithmetic, and has ``data.ptr``."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray):
        self._a = a

    # attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    ndim = property(lambda self: self._a.ndim)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DevArray(self._a.T))

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self._a.__array_interface__["data"][0])

    @property
    def __cuda_array_interface__(self):
        return {**self._a.__array_interface__, "version": 3}

    def __array__(self, *args, **kwargs):
        raise TypeError("emulated CuPy: implicit conversion to a NumPy array is not allowed (use asnumpy)")

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o, ufunc.__name__) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs, ufunc.__name__), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args, func.__name__), **_unwrap(kwargs, func.__name__)))

    # methods (those of cupy.ndarray that fastnn calls)
    def reshape(self, *shape, **kw):
        return DevArray(self._a.reshape(*shape, **kw))

    def transpose(self, *axes):
        return DevArray(self._a.transpose(*axes))

    def take(self, indices, axis=None):
        return DevArray(self._a.take(_unwrap(indices, "take"), axis=axis))

    def astype(self, dtype, copy=True):
        return DevArray(self._a.astype(dtype, copy=copy))

    def copy(self):
        return DevArray(self._a.copy())

    def sum(self, axis=None, **kw):
        return _wrap(np.asarray(self._a.sum(axis=axis, **kw)))

    def mean(self, axis=None, **kw):
        return _wrap(np.asarray(self._a.mean(axis=axis, **kw)))

    def argmax(self, axis=None):
        return _wrap(np.asarray(self._a.argmax(axis=axis)))

    def item(self):
        return self._a.item()

    def __getitem__(self, key):
        return _wrap(np.asarray(self._a[_unwrap(key, "indexing")]))

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise TypeError("emulated CuPy: assigning a NumPy (host) array into a device array")
        self._a[_unwrap(key, "indexing")] = _unwrap(value, "assignment")

    def __len__(self):
        return len(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __repr__(self):
        return f"emulated device array({self._a!r})"


def _binary(ufunc, reflected=False):
    if reflected:
        return lambda self, other: ufunc(other, self)
    return lambda self, other: ufunc(self, other)


def _inplace(ufunc):
    def op(self, other):
        ufunc(self, other, out=(self,))
        return self
    return op


for _name, _uf in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
                   ("pow", np.power)):
    setattr(DevArray, f"__{_name}__", _binary(_uf))
    setattr(DevArray, f"__r{_name}__", _binary(_uf, reflected=True))
    setattr(DevArray, f"__i{_name}__", _inplace(_uf))
for _name, _uf in (("gt", np.greater), ("ge", np.greater_equal), ("lt", np.less), ("le", np.less_equal),
                   ("eq", np.equal), ("ne", np.not_equal)):
    setattr(DevArray, f"__{_name}__", _binary(_uf))
DevArray.__neg__ = lambda self: np.negative(self)
DevArray.__abs__ = lambda self: np.absolute(self)
DevArray.__hash__ = None


def _dev(a):
    return DevArray(a)


def empty(shape, dtype=np.float32):
    return _dev(np.empty(shape, dtype=dtype))


def zeros(shape, dtype=np.float32):
    return _dev(np.zeros(shape, dtype=dtype))


def asarray(x, dtype=None):
    if isinstance(x, DevArray):
        return x if dtype is None or np.dtype(dtype) == x.dtype else x.astype(dtype)
    return _dev(np.array(x, dtype=dtype, copy=True))


def asnumpy(x):
    if isinstance(x, DevArray):
        return np.array(x._a, copy=True)
    return np.array(x, copy=True)


def add(a, b, out=None):
    return np.add(a, b, out=out)


def ascontiguousarray(x):
    return DevArray(np.ascontiguousarray(_unwrap(x, "ascontiguousarray")))


def may_share_memory(a, b):
    return np.may_share_memory(_unwrap(a), _unwrap(b))


def sort(a, axis=-1):
    """A sorted copy, as cupy.sort."""
    return DevArray(np.sort(_unwrap(a, "sort"), axis=axis))


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
    for attr in ("empty", "zeros", "asarray", "asnumpy", "add", "ascontiguousarray", "may_share_memory", "RawModule",
                 "DevArray", "sort"):
        setattr(cupy, attr, getattr(sys.modules[__name__], attr))
    cupy.ndarray = DevArray
    cupy.cuda = cuda
    for name, mod in (("cupy", cupy), ("cupy.cuda", cuda), ("cupy.cuda.cublas", cublas)):
        monkeypatch.setitem(sys.modules, name, mod)
    return cupy
