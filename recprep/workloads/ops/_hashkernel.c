/*
 * _hashkernel: sigrid_hash over a whole column in one pass.
 *
 *   out[i] = mix64(in[i] + salt * 0x9E3779B97F4A7C15) mod max_value
 *
 * with mix64 the splitmix64 finaliser, exactly as recprep/workloads/ops/hashing.py defines it
 * (that module is the reference; tests compare the two on random and edge-case inputs). numpy
 * needs seven full-column passes and a hardware division per value for the same thing; here the
 * remainder uses a precomputed reciprocal: with m = floor(2^64 / d), q = floor(x * m / 2^64) is
 * the true quotient or one less, so r = x - q * d needs at most one correction.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static PyObject *sigrid_hash(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    unsigned long long salt, max_value;
    if (!PyArg_ParseTuple(args, "y*w*KK", &src, &dst, &salt, &max_value)) return NULL;
    PyObject *result = NULL;
    if (src.len % 8 || dst.len < src.len || max_value == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "sigrid_hash: needs 8-byte values, an output at least as long, max_value > 0");
        goto done;
    }
    const uint64_t *in = (const uint64_t *)src.buf;
    uint64_t *out = (uint64_t *)dst.buf;
    const Py_ssize_t n = src.len / 8;
    const uint64_t add = (uint64_t)salt * UINT64_C(0x9E3779B97F4A7C15);
    const uint64_t d = (uint64_t)max_value;
    Py_BEGIN_ALLOW_THREADS
    if (d == 1) {
        for (Py_ssize_t i = 0; i < n; i++) out[i] = 0;
    } else {
        /* floor(2^64 / d) for d >= 2, computed without 128-bit division */
        const uint64_t m = (UINT64_MAX / d) + ((UINT64_MAX % d) + 1 == d);
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t x = mix64(in[i] + add);
            uint64_t q = (uint64_t)(((unsigned __int128)x * m) >> 64);
            uint64_t r = x - q * d;
            out[i] = r >= d ? r - d : r;
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef METHODS[] = {
    {"sigrid_hash", sigrid_hash, METH_VARARGS,
     "sigrid_hash(values, out, salt, max_value): out[i] = mix64(values[i] + salt * golden) % max_value"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_hashkernel", "sigrid_hash over a whole int64 column in one pass.", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hashkernel(void) { return PyModule_Create(&MODULE); }
