/*
 * _encode: the Parquet encodings that need a loop per value.
 *
 * dict_encode(values, itemsize, indices_out, dictionary_out, max_distinct) -> distinct or -1
 *     Dictionary-encode fixed-width values (4 or 8 bytes, compared bit for bit) in order of
 *     first occurrence: indices_out[i] is the position of values[i] in the dictionary. Gives up
 *     (-1) once more than max_distinct distinct values are seen: the caller writes PLAIN.
 *
 * rle_hybrid(values, itemsize, bit_width) -> bytes
 *     The RLE / bit-packing hybrid of the Parquet format (levels and dictionary indices):
 *     runs of 8 or more equal values become RLE runs, everything else bit-packed groups of 8
 *     (the last group zero-padded). Unsigned values of 1, 2 or 4 bytes; bit_width 0..32.
 *
 * list_levels(offsets, list_valid, item_valid, empty_def, element_def, rep_out, def_out) -> levels
 *     Repetition and definition levels of a one-level list column: per row, one level
 *     (rep 0; def 0 for a null list, empty_def for an empty one) or one per element (rep 0 for
 *     the first, 1 after; def element_def, or element_def - 1 for a null item). offsets: the
 *     n + 1 int32 list offsets; list_valid: n bytes 0/1 or None; item_valid: one byte per child
 *     slot from offsets[0] (0/1) or None. The outputs hold at least n + offsets[n] - offsets[0].
 *
 * delta_binary_packed(values, itemsize) -> bytes
 *     The DELTA_BINARY_PACKED encoding of signed 4- or 8-byte integers: blocks of 128 deltas
 *     (computed with the type's wrapping arithmetic) in 4 miniblocks of 32, each block its
 *     minimum delta and each miniblock the deltas less that minimum, bit-packed at the width of
 *     its largest; the last block's unused miniblocks have width 0 and no bytes, its last
 *     miniblock is zero-padded to 32 values.
 *
 * All are deterministic functions of their input (what makes shard bytes reproducible).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../_buffers.h"

#include <stdint.h>
#include <string.h>

static inline uint64_t hash64(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static inline uint64_t load(const char *base, Py_ssize_t i, int itemsize) {
    if (itemsize == 8) {
        uint64_t v;
        memcpy(&v, base + 8 * i, 8);
        return v;
    }
    uint32_t v;
    memcpy(&v, base + 4 * i, 4);
    return v;
}

static PyObject *dict_encode(PyObject *self, PyObject *args) {
    Py_buffer values, indices, dictionary;
    int itemsize;
    Py_ssize_t max_distinct;
    if (!PyArg_ParseTuple(args, "y*iw*w*n", &values, &itemsize, &indices, &dictionary, &max_distinct))
        return NULL;
    PyObject *result = NULL;
    int32_t *slots = NULL; /* open addressing: dictionary position + 1, 0 = empty */
    if ((itemsize != 4 && itemsize != 8) || values.len % itemsize) {
        PyErr_SetString(PyExc_ValueError, "dict_encode: itemsize must be 4 or 8 and divide the input");
        goto done;
    }
    const Py_ssize_t n = values.len / itemsize;
    if (indices.len < 4 * n || dictionary.len < values.len || max_distinct < 0 || max_distinct > INT32_MAX - 1) {
        PyErr_SetString(PyExc_ValueError, "dict_encode: output buffers too small or bad max_distinct");
        goto done;
    }
    Py_ssize_t capacity = 1024;
    slots = PyMem_RawCalloc((size_t)capacity, sizeof(int32_t));
    if (!slots) {
        PyErr_NoMemory();
        goto done;
    }
    const char *in = (const char *)values.buf;
    char *dict = (char *)dictionary.buf;
    int32_t *idx = (int32_t *)indices.buf;
    Py_ssize_t distinct = 0;
    int gave_up = 0, no_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t v = load(in, i, itemsize);
        size_t mask = (size_t)capacity - 1, h = (size_t)hash64(v) & mask;
        for (;;) {
            int32_t s = slots[h];
            if (s == 0) {
                if (distinct == max_distinct) {
                    gave_up = 1;
                    break;
                }
                memcpy(dict + itemsize * distinct, in + itemsize * i, (size_t)itemsize);
                slots[h] = (int32_t)(++distinct);
                idx[i] = (int32_t)(distinct - 1);
                break;
            }
            if (load(dict, s - 1, itemsize) == v) {
                idx[i] = s - 1;
                break;
            }
            h = (h + 1) & mask;
        }
        if (gave_up) break;
        if (2 * distinct > capacity) { /* keep the load factor at most 1/2 */
            Py_ssize_t grown = capacity * 2;
            int32_t *fresh = PyMem_RawCalloc((size_t)grown, sizeof(int32_t));
            if (!fresh) {
                no_memory = 1;
                break;
            }
            for (Py_ssize_t d = 0; d < distinct; d++) {
                size_t m = (size_t)grown - 1, g = (size_t)hash64(load(dict, d, itemsize)) & m;
                while (fresh[g]) g = (g + 1) & m;
                fresh[g] = (int32_t)(d + 1);
            }
            PyMem_RawFree(slots);
            slots = fresh;
            capacity = grown;
        }
    }
    Py_END_ALLOW_THREADS
    if (no_memory) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyLong_FromSsize_t(gave_up ? -1 : distinct);
done:
    if (slots) PyMem_RawFree(slots);
    PyBuffer_Release(&values);
    PyBuffer_Release(&indices);
    PyBuffer_Release(&dictionary);
    return result;
}

static inline unsigned char *put_varint(unsigned char *out, uint64_t v) {
    while (v >= 0x80) {
        *out++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *out++ = (unsigned char)v;
    return out;
}

/* Bit-pack in[0, 8 * groups) (past n: zeros) at `width` bits, LSB first. */
static unsigned char *pack_groups(unsigned char *out, const uint32_t *in, Py_ssize_t groups, Py_ssize_t n,
                                  int width) {
    uint64_t acc = 0;
    int bits = 0;
    for (Py_ssize_t i = 0; i < 8 * groups; i++) {
        acc |= (uint64_t)(i < n ? in[i] : 0) << bits;
        bits += width;
        while (bits >= 8) {
            *out++ = (unsigned char)acc;
            acc >>= 8;
            bits -= 8;
        }
    }
    return out; /* 8 * width bits per group: always whole bytes */
}

/* Length of the run of equal values starting at in[0] (at most n). */
static inline Py_ssize_t run_length(const uint32_t *in, Py_ssize_t n) {
    Py_ssize_t r = 1;
    while (r < n && in[r] == in[0]) r++;
    return r;
}

/* The hybrid encoding of n uint32 values into out (sized by the caller); returns the end. */
static unsigned char *hybrid(unsigned char *out, const uint32_t *in, Py_ssize_t n, int width) {
    const int value_bytes = (width + 7) / 8;
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t run = run_length(in + i, n - i);
        if (run >= 8) {
            out = put_varint(out, (uint64_t)run << 1);
            for (int b = 0; b < value_bytes; b++) *out++ = (unsigned char)(in[i] >> (8 * b));
            i += run;
            continue;
        }
        /* bit-packed groups from i until a run of 8 equal values starts at a group boundary */
        Py_ssize_t j = i + 8;
        while (j < n) {
            Py_ssize_t k = 1, left = n - j < 8 ? n - j : 8;
            while (k < left && in[j + k] == in[j]) k++;
            if (k == 8) break;
            j += 8;
        }
        Py_ssize_t groups = (j - i + 7) / 8;
        out = put_varint(out, ((uint64_t)groups << 1) | 1);
        out = pack_groups(out, in + i, groups, n - i, width);
        i = j < n ? j : n;
    }
    return out;
}

static PyObject *rle_hybrid(PyObject *self, PyObject *args) {
    Py_buffer values;
    int itemsize, width;
    if (!PyArg_ParseTuple(args, "y*ii", &values, &itemsize, &width)) return NULL;
    PyObject *result = NULL;
    uint32_t *wide = NULL;
    if ((itemsize != 1 && itemsize != 2 && itemsize != 4) || values.len % itemsize || width < 0 || width > 32) {
        PyErr_SetString(PyExc_ValueError, "rle_hybrid: itemsize 1, 2 or 4 and bit_width 0..32");
        goto done;
    }
    const Py_ssize_t n = values.len / itemsize;
    const int value_bytes = (width + 7) / 8;
    /* worst case: every value in a bit-packed group, plus one header per 8 values */
    Py_ssize_t bound = (n / 8 + 2) * ((Py_ssize_t)width + 5 + 5 + value_bytes) + 16;
    result = PyBytes_FromStringAndSize(NULL, bound);
    if (!result) goto done;
    unsigned char *start = (unsigned char *)PyBytes_AS_STRING(result), *out = start;
    const uint32_t *in = (const uint32_t *)values.buf;
    if (itemsize != 4 && n) { /* widen once: one code path for every input width */
        wide = PyMem_RawMalloc((size_t)n * sizeof(uint32_t));
        if (!wide) {
            Py_CLEAR(result);
            PyErr_NoMemory();
            goto done;
        }
        if (itemsize == 1)
            for (Py_ssize_t i = 0; i < n; i++) wide[i] = ((const uint8_t *)values.buf)[i];
        else
            for (Py_ssize_t i = 0; i < n; i++) wide[i] = ((const uint16_t *)values.buf)[i];
        in = wide;
    }
    if (width > 0 && n) {
        Py_BEGIN_ALLOW_THREADS
        out = hybrid(out, in, n, width);
        Py_END_ALLOW_THREADS
    }
    if (_PyBytes_Resize(&result, out - start) < 0) result = NULL;
done:
    if (wide) PyMem_RawFree(wide);
    PyBuffer_Release(&values);
    return result;
}

enum { DELTA_BLOCK = 128, DELTA_MINIBLOCKS = 4, DELTA_MINI = DELTA_BLOCK / DELTA_MINIBLOCKS };

static unsigned char *uleb128(unsigned char *out, uint64_t v) {
    do {
        unsigned char b = v & 0x7F;
        v >>= 7;
        *out++ = b | (v ? 0x80 : 0);
    } while (v);
    return out;
}

static unsigned char *zigzag(unsigned char *out, int64_t v) {
    return uleb128(out, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* `count` (<= DELTA_MINI) values of `width` bits, LSB first, padded with zeros to DELTA_MINI. */
static unsigned char *pack_mini(unsigned char *out, const uint64_t *v, int count, int width) {
    if (!width) return out;
    unsigned __int128 acc = 0;
    int bits = 0;
    for (int i = 0; i < DELTA_MINI; i++) {
        acc |= (unsigned __int128)(i < count ? v[i] : 0) << bits;
        bits += width;
        while (bits >= 8) {
            *out++ = (unsigned char)acc;
            acc >>= 8;
            bits -= 8;
        }
    }
    return out; /* DELTA_MINI * width is a multiple of 8: nothing left over */
}

static unsigned char *delta_encode(unsigned char *out, const char *base, Py_ssize_t n, int itemsize) {
    const uint64_t mask = itemsize == 8 ? UINT64_MAX : UINT32_MAX;
    out = uleb128(out, DELTA_BLOCK);
    out = uleb128(out, DELTA_MINIBLOCKS);
    out = uleb128(out, (uint64_t)n);
    if (!n) return zigzag(out, 0);
    int64_t first = itemsize == 8 ? (int64_t)load(base, 0, 8) : (int64_t)(int32_t)load(base, 0, 4);
    out = zigzag(out, first);
    uint64_t prev = load(base, 0, itemsize), packed[DELTA_BLOCK];
    int64_t delta[DELTA_BLOCK];
    for (Py_ssize_t at = 1; at < n; at += DELTA_BLOCK) {
        int count = n - at < DELTA_BLOCK ? (int)(n - at) : DELTA_BLOCK;
        int64_t low = 0;
        for (int i = 0; i < count; i++) {
            uint64_t v = load(base, at + i, itemsize);
            uint64_t d = (v - prev) & mask; /* the type's wrapping difference */
            delta[i] = itemsize == 8 ? (int64_t)d : (int64_t)(int32_t)(uint32_t)d;
            if (!i || delta[i] < low) low = delta[i];
            prev = v;
        }
        out = zigzag(out, low);
        unsigned char *widths = out;
        out += DELTA_MINIBLOCKS;
        for (int m = 0; m < DELTA_MINIBLOCKS; m++) {
            int a = m * DELTA_MINI, b = a + DELTA_MINI < count ? a + DELTA_MINI : count, width = 0;
            uint64_t top = 0;
            for (int i = a; i < b; i++) {
                packed[i] = ((uint64_t)delta[i] - (uint64_t)low) & mask;
                top |= packed[i];
            }
            while (top) {
                width++;
                top >>= 1;
            }
            widths[m] = (unsigned char)width;
            if (a < count) out = pack_mini(out, packed + a, b - a, width);
        }
    }
    return out;
}

static PyObject *delta_binary_packed(PyObject *self, PyObject *args) {
    Py_buffer values;
    int itemsize;
    if (!PyArg_ParseTuple(args, "y*i", &values, &itemsize)) return NULL;
    PyObject *result = NULL;
    if ((itemsize != 4 && itemsize != 8) || values.len % itemsize) {
        PyErr_SetString(PyExc_ValueError, "delta_binary_packed: itemsize must be 4 or 8 and divide the input");
        goto done;
    }
    const Py_ssize_t n = values.len / itemsize;
    /* header <= 4 * 10 bytes; per block 10 + 4 bytes and at most 128 values of itemsize + 1 bytes */
    Py_ssize_t bound = 64 + (n / DELTA_BLOCK + 1) * (14 + DELTA_BLOCK * ((Py_ssize_t)itemsize + 1));
    result = PyBytes_FromStringAndSize(NULL, bound);
    if (!result) goto done;
    unsigned char *start = (unsigned char *)PyBytes_AS_STRING(result), *out;
    Py_BEGIN_ALLOW_THREADS
    out = delta_encode(start, values.buf, n, itemsize);
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&result, out - start) < 0) result = NULL;
done:
    PyBuffer_Release(&values);
    return result;
}

static PyObject *list_levels(PyObject *self, PyObject *args) {
    Py_buffer offsets, rep_out, def_out;
    PyObject *list_valid_obj, *item_valid_obj;
    int empty_def, element_def;
    if (!PyArg_ParseTuple(args, "y*OOiiw*w*", &offsets, &list_valid_obj, &item_valid_obj, &empty_def, &element_def,
                          &rep_out, &def_out))
        return NULL;
    PyObject *result = NULL;
    Py_buffer list_valid = {0}, item_valid = {0};
    const Py_ssize_t n = offsets.len / 4 - 1;
    const int32_t *off = (const int32_t *)offsets.buf;
    if (offsets.len % 4 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "list_levels: offsets must be n + 1 int32 values");
        goto done;
    }
    const Py_ssize_t children = (Py_ssize_t)off[n] - off[0];
    if (children < 0 || rep_out.len < n + children || def_out.len < n + children || element_def < 1 ||
        element_def > 255 || empty_def < 0 || empty_def > 255) {
        PyErr_SetString(PyExc_ValueError, "list_levels: bad offsets, levels or output sizes");
        goto done;
    }
    if (optional_buffer(list_valid_obj, &list_valid, n, "list_levels: list_valid shorter than the rows") < 0 ||
        optional_buffer(item_valid_obj, &item_valid, children, "list_levels: item_valid shorter than the child slots") < 0)
        goto done;
    const unsigned char *lv = list_valid.buf, *iv = item_valid.buf;
    unsigned char *rep = rep_out.buf, *def = def_out.buf;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t a = off[i], b = off[i + 1];
        if (b < a) {
            PyErr_SetString(PyExc_ValueError, "list_levels: offsets decrease");
            goto done;
        }
        if (lv && !lv[i]) {
            rep[k] = 0;
            def[k++] = 0;
        } else if (b - a <= 1 && !iv) { /* the common case (after firstx k=1): no branch on a == b */
            rep[k] = 0;
            def[k++] = (unsigned char)(b > a ? element_def : empty_def);
        } else if (a == b) {
            rep[k] = 0;
            def[k++] = (unsigned char)empty_def;
        } else {
            for (int32_t j = a; j < b; j++) {
                rep[k] = j > a;
                def[k++] = (unsigned char)(iv && !iv[j - off[0]] ? element_def - 1 : element_def);
            }
        }
    }
    result = PyLong_FromSsize_t(k);
done:
    if (list_valid.obj) PyBuffer_Release(&list_valid);
    if (item_valid.obj) PyBuffer_Release(&item_valid);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&rep_out);
    PyBuffer_Release(&def_out);
    return result;
}

static PyMethodDef METHODS[] = {
    {"list_levels", list_levels, METH_VARARGS,
     "list_levels(offsets, list_valid, item_valid, empty_def, element_def, rep_out, def_out) -> levels"},
    {"dict_encode", dict_encode, METH_VARARGS,
     "dict_encode(values, itemsize, indices_out, dictionary_out, max_distinct) -> distinct or -1"},
    {"rle_hybrid", rle_hybrid, METH_VARARGS, "rle_hybrid(values, itemsize, bit_width) -> bytes"},
    {"delta_binary_packed", delta_binary_packed, METH_VARARGS, "delta_binary_packed(values, itemsize) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_encode", "Parquet dictionary, RLE/bit-packed hybrid and delta encoders.", -1,
    METHODS, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__encode(void) { return PyModule_Create(&MODULE); }
