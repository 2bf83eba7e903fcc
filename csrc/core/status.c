#include "fastnn.h"

const char *fnn_strerror(int status) {
    switch (status) {
    case FNN_OK: return "success";
    case FNN_ERR_ARG: return "invalid argument (size, leading dimension, flag or pointer)";
    case FNN_ERR_NOMEM: return "out of memory allocating a kernel workspace";
    case FNN_ERR_ARCH: return "kernel variant not supported by this CPU";
    case FNN_ERR_LABEL: return "class label out of range";
    case FNN_ERR_INDEX: return "embedding index out of range";
    default: return "unknown fastnn status";
    }
}
