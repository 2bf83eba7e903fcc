# Cython bindings of the convolution and pooling kernels (included by _core.pyx).
