"""Build of fastnn's one extension module: the Cython bindings over the C kernels in csrc/.

Portable by construction: the common code gets no -march flag, and each SIMD variant folder
(csrc/x86/avx2, csrc/x86/avx512, avx512bf16, amx) is compiled with only its own instruction-set flags
(amx only where the compiler accepts them, see SIMD_PROBES); the
variant is chosen at run time by CPU detection (csrc/core/cpu.c). OpenMP is used when the
compiler supports it, else the kernels build serial and a warning says so.

Environment variables read at build time:

FASTNN_DEBUG=1
    Cython bounds, wraparound and initialisation checks in the bindings.
FASTNN_SANITIZE=address,undefined   (or a subset: address / undefined; 1 means address,undefined)
    Instrument every object (the common sources, the Cython module and each SIMD folder) with the
    sanitizers: -fsanitize=... (undefined adds float-cast-overflow, which GCC leaves out of it),
    -fno-sanitize-recover=... (undefined behaviour aborts, so the test that hit it fails),
    -fno-omit-frame-pointer -g for readable stacks, -O1 instead of -O3 (fast enough for the whole
    suite; reports point at the source line rather than at vectorised, inlined copies of it; the
    SIMD intrinsics are still what runs), and -fno-wrapv so that signed overflow is reported
    (Python's CFLAGS carry -fwrapv). Python itself is not instrumented: run with the sanitizer
    runtimes preloaded, as tools/sanitize.sh does. Unset or empty: the normal build, unchanged.
"""
import os
import tempfile
import warnings
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
SIMD_FLAGS = {
    os.path.join("csrc", "x86", "avx2"): ["-mavx2", "-mfma"],
    os.path.join("csrc", "x86", "avx512"): ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl",
                                            "-mavx2", "-mfma"],
    os.path.join("csrc", "x86", "avx512bf16"): ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl",
                                                "-mavx512bf16", "-mavx2", "-mfma"],
    # AMX also uses the AVX-512 packers and conversions of avx512bf16 (every AMX CPU has them)
    os.path.join("csrc", "x86", "amx"): ["-mamx-tile", "-mamx-bf16", "-mavx512f", "-mavx512dq", "-mavx512bw",
                                         "-mavx512vl", "-mavx512bf16", "-mavx2", "-mfma"],
}
# Folders built only when the compiler accepts their flags and intrinsics (GCC 11+, Clang 12+ for
# AMX): the probe's source must compile, else the folder is left out, its FNN_HAVE_ macro stays
# undefined and the dispatcher never offers the variant.
SIMD_PROBES = {
    os.path.join("csrc", "x86", "amx"): (
        "#include <immintrin.h>\n"
        "void probe(const void *cfg, void *p) { _tile_loadconfig(cfg); _tile_zero(0);\n"
        "  _tile_loadd(1, p, 64); _tile_loadd(2, p, 64); _tile_dpbf16ps(0, 1, 2);\n"
        "  _tile_stored(0, p, 64); _tile_release(); }\n"),
}
BASE_FLAGS = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-Wno-unknown-pragmas"]
SANITIZERS = ("address", "undefined")


def sanitize_flags(value):
    """Compile and link flags for FASTNN_SANITIZE's value ([] when unset or empty)."""
    value = (value or "").strip()
    if not value:
        return []
    names = list(SANITIZERS) if value == "1" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in SANITIZERS]
    if unknown or not names:
        raise SystemExit(f"FASTNN_SANITIZE={value!r}: unknown sanitizer {', '.join(unknown) or '(none)'}; "
                         f"use a comma-separated subset of {','.join(SANITIZERS)}, or 1 for both")
    names = [n for n in SANITIZERS if n in names]  # fixed order, no duplicates
    if "undefined" in names:
        # float-cast-overflow (a float converted to an integer type that cannot hold it, undefined in C)
        # is not part of GCC's -fsanitize=undefined; float-divide-by-zero is left out on purpose (IEEE
        # division by zero is defined on every target we build for, and inf/nan inputs are tested).
        names.append("float-cast-overflow")
    flags = ["-fsanitize=" + ",".join(names), "-fno-omit-frame-pointer", "-g"]
    if "undefined" in names:
        # -fno-wrapv undoes the -fwrapv of Python's CFLAGS, which makes signed overflow defined and so
        # hides it from UBSan; the kernels must not rely on wrapping.
        flags += ["-fno-sanitize-recover=undefined,float-cast-overflow", "-fno-wrapv"]
    return flags


SANITIZE = sanitize_flags(os.environ.get("FASTNN_SANITIZE"))
if SANITIZE:
    # -O1 after Python's own CFLAGS (-O3), which come first: the last -O wins.
    BASE_FLAGS = [f for f in BASE_FLAGS if f != "-O3"] + ["-O1"] + SANITIZE
X86 = any(m in (os.uname().machine if hasattr(os, "uname") else "x86_64") for m in ("x86", "amd64", "AMD64"))


def _rel(path):
    return os.path.relpath(path, HERE)


def c_sources():
    """Common C sources (csrc/**.c minus the SIMD folders and test harnesses)."""
    out = []
    for path in sorted(glob(os.path.join(HERE, "csrc", "**", "*.c"), recursive=True)):
        rel = _rel(path)
        if os.sep + "test" + os.sep in rel or any(rel.startswith(d) for d in SIMD_FLAGS):
            continue
        out.append(rel)
    return out


def simd_sources():
    return {d: sorted(_rel(p) for p in glob(os.path.join(HERE, d, "*.c"))) for d in SIMD_FLAGS}


class BuildExt(build_ext):
    def _compiles(self, source, flags):
        """Whether the compiler builds source (an object file, not linked) with flags."""
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(source)
            try:
                self.compiler.compile([src], output_dir=tmp, extra_postargs=BASE_FLAGS + flags)
                return True
            except Exception:
                return False

    def _try_flags(self, flags):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp.c")
            with open(src, "w") as f:
                f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
                self.compiler.link_executable(objs, os.path.join(tmp, "omp"), extra_postargs=flags)
                return True
            except Exception:
                return False

    def build_extension(self, ext):
        omp = ["-fopenmp"] if self._try_flags(["-fopenmp"]) else []
        if not omp:
            warnings.warn("fastnn: the C compiler has no OpenMP; building the kernels single-threaded", stacklevel=1)
        simd_defs = []
        objects = []
        if X86:
            for folder, sources in simd_sources().items():
                if not sources:
                    continue
                probe = SIMD_PROBES.get(folder)
                if probe is not None and not self._compiles(probe, SIMD_FLAGS[folder]):
                    warnings.warn(f"fastnn: the C compiler does not build {folder} ({' '.join(SIMD_FLAGS[folder])}); "
                                  "that kernel is left out", stacklevel=1)
                    continue
                objects += self.compiler.compile(
                    sources, output_dir=self.build_temp, include_dirs=ext.include_dirs,
                    extra_postargs=BASE_FLAGS + omp + SIMD_FLAGS[folder])
                simd_defs.append(("FNN_HAVE_" + os.path.basename(folder).upper(), "1"))
        ext.extra_objects = list(ext.extra_objects or []) + objects
        ext.define_macros = list(ext.define_macros or []) + simd_defs
        ext.extra_compile_args = list(ext.extra_compile_args or []) + BASE_FLAGS + omp
        ext.extra_link_args = list(ext.extra_link_args or []) + omp + SANITIZE
        super().build_extension(ext)


debug = os.environ.get("FASTNN_DEBUG") == "1"
ext = Extension(
    "fastnn._core",
    sources=[os.path.join("fastnn", "_core.pyx")] + c_sources(),
    include_dirs=[os.path.join("csrc", "include"), "csrc"],
    # Headers, templates and the SIMD sources (compiled apart): a change to any of them rebuilds.
    depends=sorted(_rel(p) for pattern in ("csrc/**/*.h", "csrc/x86/**/*.c", "fastnn/*.pxi", "fastnn/*.pxd")
                   for p in glob(os.path.join(HERE, pattern), recursive=True)),
)
setup(
    ext_modules=cythonize(
        [ext], language_level=3,
        compiler_directives={"boundscheck": debug, "wraparound": debug, "initializedcheck": debug},
    ),
    cmdclass={"build_ext": BuildExt},
)
