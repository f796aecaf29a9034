/*
 * _kernels: the ops' per-value loops that numpy would need several full-column passes for.
 *
 * sigrid_hash(values, out, salt, max_value)
 *   out[i] = mix64(in[i] + salt * 0x9E3779B97F4A7C15) mod max_value
 *
 * with mix64 the splitmix64 finaliser, exactly as recprep/workloads/ops/hashing.py defines it
 * (that module is the reference; tests compare the two on random and edge-case inputs). numpy
 * needs seven full-column passes and a hardware division per value for the same thing; here the
 * remainder uses a precomputed reciprocal: with m = floor(2^64 / d), q = floor(x * m / 2^64) is
 * the true quotient or one less, so r = x - q * d needs at most one correction.
 *
 * singleton_lists(values, itemsize, bitmap, bit_offset, entry_valid, offsets_out, values_out) -> kept
 *   to_list's core: row i becomes [values[i]] when it is valid, else []. Validity is the Arrow
 *   bitmap (None: all valid) and, for dictionary indices, entry_valid[values[i]] (one byte per
 *   dictionary entry; None: all valid). Writes n + 1 int32 offsets and the kept values.
 *
 * hex_strings(offsets, offset_size, data, bitmap, bit_offset, values_out, valid_out) -> nulls
 *   hex_to_int on an Arrow string array (its offsets of 4 or 8 bytes, its data, its validity
 *   bitmap or None): values_out[i] the ID, valid_out[i] 1, or 0 for a null row or a string that
 *   is not 1-16 hex digits (see ../_hex.h).
 *
 * fnv1a_strings(offsets, offset_size, data, bitmap, bit_offset, values_out, valid_out) -> nulls
 *   FNV-1a 64 of each string's bytes (sigrid_hash and cross on strings; the reference is
 *   ops/strings.py::fnv1a64): h = 0xCBF29CE484222325, then for each byte b: h = (h ^ b) *
 *   0x100000001B3 mod 2^64. A null row or an empty string gives valid_out[i] = 0 (and 0).
 *
 * decimal_strings(offsets, offset_size, data, bitmap, bit_offset, values_out, valid_out) -> nulls
 *   to_int: an optional '+' or '-' and one or more ASCII digits (leading zeros allowed), in the
 *   int64 range -> the value; anything else (null, empty, another byte, out of range) -> null.
 *
 * fold64(keys, h, salt, first, max_value)
 *   cross's fold, one column at a time over uint64 buffers of equal length: with k = mix64(keys[i]
 *   + salt * 0x9E3779B97F4A7C15), h[i] = k for the first column, else h[i] = mix64(h[i] ^ k); with
 *   max_value > 0 (the last column) h[i] is then reduced mod max_value as sigrid_hash reduces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "../_buffers.h"
#include "../_hex.h"

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* floor(2^64 / d) for d >= 2, computed without 128-bit division */
static inline uint64_t reciprocal(uint64_t d) {
    return (UINT64_MAX / d) + ((UINT64_MAX % d) + 1 == d);
}

/* x mod d for d >= 2, with m = reciprocal(d): the quotient from one 128-bit multiply, then at
   most one correction */
static inline uint64_t reduce(uint64_t x, uint64_t d, uint64_t m) {
    uint64_t q = (uint64_t)(((unsigned __int128)x * m) >> 64);
    uint64_t r = x - q * d;
    return r >= d ? r - d : r;
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
        const uint64_t m = reciprocal(d);
        for (Py_ssize_t i = 0; i < n; i++) out[i] = reduce(mix64(in[i] + add), d, m);
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyObject *singleton_lists(PyObject *self, PyObject *args) {
    Py_buffer values, offsets_out, values_out;
    Py_buffer bitmap = {0}, entry = {0};
    int itemsize;
    Py_ssize_t bit_offset;
    PyObject *bitmap_obj, *entry_obj;
    if (!PyArg_ParseTuple(args, "y*iOnOw*w*", &values, &itemsize, &bitmap_obj, &bit_offset, &entry_obj,
                          &offsets_out, &values_out))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = itemsize > 0 ? values.len / itemsize : 0;
    if ((itemsize != 4 && itemsize != 8) || values.len % itemsize || offsets_out.len < 4 * (n + 1) ||
        values_out.len < values.len || bit_offset < 0 || n >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "singleton_lists: 4- or 8-byte values and outputs that hold them");
        goto done;
    }
    if (optional_buffer(bitmap_obj, &bitmap, (bit_offset + n + 7) / 8, "singleton_lists: validity bitmap too short") < 0)
        goto done;
    if (entry_obj != Py_None) {
        if (itemsize != 4 || PyObject_GetBuffer(entry_obj, &entry, PyBUF_SIMPLE) < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "singleton_lists: entry_valid needs int32 indices");
            goto done;
        }
    }
    const uint8_t *bits = bitmap.buf, *ev = entry.buf;
    int32_t *off = offsets_out.buf;
    Py_ssize_t kept = 0, bad_index = -1;
    Py_BEGIN_ALLOW_THREADS
    if (itemsize == 8) {
        const uint64_t *in = values.buf;
        uint64_t *out = values_out.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            off[i] = (int32_t)kept;
            Py_ssize_t b = bit_offset + i;
            out[kept] = in[i];
            kept += bits ? (bits[b >> 3] >> (b & 7)) & 1 : 1;
        }
    } else {
        const int32_t *in = values.buf;
        int32_t *out = values_out.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            off[i] = (int32_t)kept;
            Py_ssize_t b = bit_offset + i;
            int ok = bits ? (bits[b >> 3] >> (b & 7)) & 1 : 1;
            if (ok && ev) {
                if (in[i] < 0 || in[i] >= entry.len) {
                    bad_index = i;
                    break;
                }
                ok = ev[in[i]] != 0;
            }
            out[kept] = in[i];
            kept += ok;
        }
    }
    off[n] = (int32_t)kept;
    Py_END_ALLOW_THREADS
    if (bad_index >= 0) {
        PyErr_Format(PyExc_ValueError, "singleton_lists: index out of the dictionary at row %zd", bad_index);
        goto done;
    }
    result = PyLong_FromSsize_t(kept);
done:
    if (bitmap.obj) PyBuffer_Release(&bitmap);
    if (entry.obj) PyBuffer_Release(&entry);
    PyBuffer_Release(&values);
    PyBuffer_Release(&offsets_out);
    PyBuffer_Release(&values_out);
    return result;
}


/* One string's value: 1 and *out, or 0 for not a value (the row becomes null). */
typedef int (*string_fn)(const unsigned char *s, ptrdiff_t len, uint64_t *out);

static int fnv1a(const unsigned char *s, ptrdiff_t len, uint64_t *out) {
    uint64_t h = UINT64_C(0xCBF29CE484222325);
    for (ptrdiff_t i = 0; i < len; i++) h = (h ^ s[i]) * UINT64_C(0x100000001B3);
    *out = h;
    return len > 0;
}

static int parse_decimal(const unsigned char *s, ptrdiff_t len, uint64_t *out) {
    ptrdiff_t i = 0;
    int negative = 0;
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        i = 1;
    }
    if (i == len) return 0;
    /* magnitude limit: 2^63 - 1, or 2^63 for a negative value */
    const uint64_t limit = negative ? UINT64_C(9223372036854775808) : UINT64_C(9223372036854775807);
    uint64_t v = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned)s[i] - '0';
        if (d > 9) return 0;
        if (v > (limit - d) / 10) return 0; /* v * 10 + d > limit */
        v = v * 10 + d;
    }
    *out = negative ? (uint64_t)0 - v : v;
    return 1;
}

/* The loop of fnv1a_strings and decimal_strings over an Arrow string/binary array. */
static PyObject *string_kernel(PyObject *args, const char *name, string_fn fn) {
    Py_buffer offsets, data, values_out, valid_out, bitmap = {0};
    int offset_size;
    Py_ssize_t bit_offset;
    PyObject *bitmap_obj;
    if (!PyArg_ParseTuple(args, "y*iy*Onw*w*", &offsets, &offset_size, &data, &bitmap_obj, &bit_offset,
                          &values_out, &valid_out))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = (offset_size == 4 || offset_size == 8) ? offsets.len / offset_size - 1 : -1;
    if (n < 0 || values_out.len < 8 * n || valid_out.len < n || bit_offset < 0) {
        PyErr_Format(PyExc_ValueError, "%s: 4- or 8-byte offsets and outputs for every row", name);
        goto done;
    }
    if (optional_buffer(bitmap_obj, &bitmap, (bit_offset + n + 7) / 8, "validity bitmap too short") < 0)
        goto done;
    const uint8_t *bits = bitmap.buf;
    const unsigned char *text = data.buf;
    uint64_t *out = values_out.buf;
    uint8_t *ok = valid_out.buf;
    Py_ssize_t nulls = 0, bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t a, b;
        if (offset_size == 4) {
            a = ((const int32_t *)offsets.buf)[i];
            b = ((const int32_t *)offsets.buf)[i + 1];
        } else {
            a = ((const int64_t *)offsets.buf)[i];
            b = ((const int64_t *)offsets.buf)[i + 1];
        }
        if (a < 0 || b < a || b > data.len) {
            bad = i;
            break;
        }
        Py_ssize_t k = bit_offset + i;
        uint64_t v = 0;
        int good = (!bits || ((bits[k >> 3] >> (k & 7)) & 1)) && fn(text + a, (ptrdiff_t)(b - a), &v);
        out[i] = good ? v : 0;
        ok[i] = (uint8_t)good;
        nulls += !good;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "%s: offsets out of the data at row %zd", name, bad);
        goto done;
    }
    result = PyLong_FromSsize_t(nulls);
done:
    if (bitmap.obj) PyBuffer_Release(&bitmap);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&values_out);
    PyBuffer_Release(&valid_out);
    return result;
}

static PyObject *fnv1a_strings(PyObject *self, PyObject *args) {
    return string_kernel(args, "fnv1a_strings", fnv1a);
}

static PyObject *decimal_strings(PyObject *self, PyObject *args) {
    return string_kernel(args, "decimal_strings", parse_decimal);
}

static int parse_hex_id(const unsigned char *s, ptrdiff_t len, uint64_t *out) {
    return parse_hex((const char *)s, len, out);
}

static PyObject *hex_strings(PyObject *self, PyObject *args) {
    return string_kernel(args, "hex_strings", parse_hex_id);
}

static PyObject *fold64(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    unsigned long long salt, max_value;
    int first;
    if (!PyArg_ParseTuple(args, "y*w*KpK", &src, &dst, &salt, &first, &max_value)) return NULL;
    PyObject *result = NULL;
    if (src.len % 8 || dst.len != src.len) {
        PyErr_SetString(PyExc_ValueError, "fold64: needs 8-byte keys and an output of the same length");
        goto done;
    }
    const uint64_t *in = (const uint64_t *)src.buf;
    uint64_t *h = (uint64_t *)dst.buf;
    const Py_ssize_t n = src.len / 8;
    const uint64_t add = (uint64_t)salt * UINT64_C(0x9E3779B97F4A7C15);
    const uint64_t d = (uint64_t)max_value;
    const uint64_t m = d >= 2 ? reciprocal(d) : 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t k = mix64(in[i] + add);
        uint64_t x = first ? k : mix64(h[i] ^ k);
        if (d == 1) {
            x = 0;
        } else if (d >= 2) {
            x = reduce(x, d, m);
        }
        h[i] = x;
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
    {"fold64", fold64, METH_VARARGS,
     "fold64(keys, h, salt, first, max_value): cross's fold of one column into h (reduced if max_value)"},
    {"fnv1a_strings", fnv1a_strings, METH_VARARGS,
     "fnv1a_strings(offsets, offset_size, data, bitmap, bit_offset, values_out, valid_out) -> nulls"},
    {"decimal_strings", decimal_strings, METH_VARARGS,
     "decimal_strings(offsets, offset_size, data, bitmap, bit_offset, values_out, valid_out) -> nulls"},
    {"hex_strings", hex_strings, METH_VARARGS,
     "hex_strings(offsets, offset_size, data, bitmap, bit_offset, values_out, valid_out) -> nulls"},
    {"singleton_lists", singleton_lists, METH_VARARGS,
     "singleton_lists(values, itemsize, bitmap, bit_offset, entry_valid, offsets_out, values_out) -> kept"},
    {"sigrid_hash", sigrid_hash, METH_VARARGS,
     "sigrid_hash(values, out, salt, max_value): out[i] = mix64(values[i] + salt * golden) % max_value"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The ops' per-value loops (sigrid_hash, to_list, hex_to_int, to_int, cross, string hashes).", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) {
    init_hex();
    return PyModule_Create(&MODULE);
}
