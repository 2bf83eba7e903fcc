# Cython bindings of the recurrent-cell kernels (included by _core.pyx).
