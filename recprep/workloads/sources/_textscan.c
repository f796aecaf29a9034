/*
 * _textscan: one pass over a split of delimited text, straight into typed column buffers.
 *
 * This is the fast path of recprep's text sources (see text.py). It parses only what it can
 * parse exactly like pyarrow's CSV reader with recprep's options; for anything else it
 * *declines* and the caller reads the split with pyarrow instead (which also quarantines
 * malformed rows). So the fast path never changes a result, it only skips work:
 *
 *   - hex ID columns are decoded to 64-bit integers while scanning (the `hex_to_int` op pushed
 *     down into the scan), so no string column is ever built for them;
 *   - int64 and float64 columns are parsed in place.
 *
 * Column kinds (one byte per column in `kinds`):
 *   0 skip, 1 int64, 2 float64, 3 hex -> int64 (null unless 1-16 hex digits), 4 string.
 *
 * Outputs (one entry per column in `outputs`, None for skipped columns):
 *   int64/float64/hex: (values, validity)   values: 8 * capacity bytes; validity: capacity
 *                                            bytes, 1 for a value, 0 for a null
 *   string:            (offsets, data, validity)  offsets: 4 * (capacity + 1) bytes;
 *                                            data: at least len(input) bytes
 * where capacity >= number of rows: count_lines(data) + 1 (a split declines if it has more).
 *
 * Returns (rows, nulls, decline, line, invalid): nulls is a list of null counts per column;
 * decline is 0 when the whole split was parsed, else a reason code (see DECLINE_*), and line the
 * 1-based line (within the split) where the scan gave up; invalid is a list, per column, of the
 * hex fields that were not IDs although not a null token either (values hex_to_int made null).
 *
 * Declined, always: any '"' (quoting) or '\r' (pyarrow also breaks lines on a lone CR) in the
 * split; a line with the wrong number of fields; a number pyarrow may read differently
 * (leading '+' on an integer, spaces, hex integers, inf, out-of-range values); non-ASCII
 * bytes in string or hex columns (pyarrow validates UTF-8).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../_hex.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum { K_SKIP = 0, K_INT = 1, K_FLOAT = 2, K_HEX = 3, K_STR = 4 };

enum {
    DECLINE_NONE = 0,
    DECLINE_QUOTE_OR_CR = 1,
    DECLINE_FIELDS = 2,
    DECLINE_NUMBER = 3,
    DECLINE_NON_ASCII = 4,
    DECLINE_TOO_BIG = 5,
};

#define MAX_COLUMNS 65536
#define FLOAT_TEXT_MAX 64

/* pyarrow.csv.ConvertOptions().null_values (the defaults recprep reads with). */
static const char *NULL_TOKENS[] = {
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null", NULL,
};

static int is_null_token(const char *f, Py_ssize_t len) {
    if (len == 0) return 1;
    if (len > 8) return 0;
    for (const char **t = NULL_TOKENS + 1; *t; t++) {
        if ((Py_ssize_t)strlen(*t) == len && memcmp(*t, f, (size_t)len) == 0) return 1;
    }
    return 0;
}


/* -?[0-9]{1,18}: 1 parsed, 0 not of that form. */
static inline int parse_int(const char *f, Py_ssize_t len, int64_t *out) {
    Py_ssize_t i = 0;
    int neg = 0;
    if (len && f[0] == '-') {
        neg = 1;
        i = 1;
    }
    Py_ssize_t digits = len - i;
    if (digits < 1 || digits > 18) return 0;
    int64_t v = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned char)f[i] - '0';
        if (d > 9) return 0;
        v = v * 10 + (int64_t)d;
    }
    *out = neg ? -v : v;
    return 1;
}

/* Decimal text that is not a short integer: the C library's strtod (correctly rounded in glibc). */
static __attribute__((noinline)) int parse_float_slow(const char *f, Py_ssize_t len, double *out) {
    if (len >= FLOAT_TEXT_MAX) return 0;
    char text[FLOAT_TEXT_MAX];
    memcpy(text, f, (size_t)len);
    text[len] = '\0';
    char *end = NULL;
    errno = 0;
    double d = strtod(text, &end);
    if (errno == ERANGE || end != text + len) return 0; /* overflow/underflow: let pyarrow say */
    *out = d;
    return 1;
}

/* [+-]?(digits[.digits?]|.digits)([eE][+-]?digits)?, correctly rounded (as pyarrow's
 * fast_float is): plain integers of up to 15 digits convert exactly; the rest go through the
 * C library's strtod (correctly rounded in glibc). 1 parsed, 0 not of that form / declined. */
static inline int parse_float(const char *f, Py_ssize_t len, double *out) {
    Py_ssize_t i = 0;
    int neg = 0;
    if (i < len && (f[i] == '+' || f[i] == '-')) {
        neg = f[i] == '-';
        i++;
    }
    Py_ssize_t int_start = i;
    uint64_t v = 0;
    while (i < len && (unsigned)((unsigned char)f[i] - '0') <= 9) {
        v = v * 10 + (uint64_t)(f[i] - '0');
        i++;
    }
    Py_ssize_t int_digits = i - int_start;
    if (i == len) {
        if (int_digits < 1) return 0;
        if (int_digits <= 15) {
            double d = (double)v;
            *out = neg ? -d : d;
            return 1;
        }
    } else {
        Py_ssize_t frac_digits = 0;
        if (f[i] == '.') {
            i++;
            Py_ssize_t s = i;
            while (i < len && (unsigned)((unsigned char)f[i] - '0') <= 9) i++;
            frac_digits = i - s;
        }
        if (int_digits + frac_digits < 1) return 0;
        if (i < len && (f[i] == 'e' || f[i] == 'E')) {
            i++;
            if (i < len && (f[i] == '+' || f[i] == '-')) i++;
            Py_ssize_t s = i;
            while (i < len && (unsigned)((unsigned char)f[i] - '0') <= 9) i++;
            if (i == s) return 0;
        }
        if (i != len) return 0;
    }
    return parse_float_slow(f, len, out);
}

static int has_high_byte(const char *f, Py_ssize_t len) {
    for (Py_ssize_t i = 0; i < len; i++)
        if ((unsigned char)f[i] >= 0x80) return 1;
    return 0;
}

/* What the scan loop touches per field, kept small (one or two cache lines per column). */
typedef struct {
    int kind;
    int32_t data_used; /* string bytes written so far */
    char *values;      /* int64/float64/hex values, or string offsets */
    char *data;        /* string bytes */
    uint8_t *valid;    /* one byte per row */
    Py_ssize_t nulls;
    Py_ssize_t invalid; /* hex fields that were neither an ID nor a null token */
} Column;

/* The Python buffers behind a column (released when the scan ends). */
typedef struct {
    Py_buffer values, data, validity;
} Views;

static void release_views(Views *views, Py_ssize_t n) {
    for (Py_ssize_t j = 0; j < n; j++) {
        if (views[j].values.obj) PyBuffer_Release(&views[j].values);
        if (views[j].data.obj) PyBuffer_Release(&views[j].data);
        if (views[j].validity.obj) PyBuffer_Release(&views[j].validity);
    }
    PyMem_Free(views);
}

static int get_writable(PyObject *obj, Py_buffer *view, Py_ssize_t need, const char *what, Py_ssize_t col) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len < need) {
        PyErr_Format(PyExc_ValueError, "column %zd: %s buffer holds %zd bytes, needs %zd", col, what,
                     view->len, need);
        return -1;
    }
    return 0;
}

static int setup_columns(Column *cols, Views *views, Py_ssize_t ncols, const char *kinds, PyObject *outputs,
                         Py_ssize_t capacity, Py_ssize_t data_len) {
    for (Py_ssize_t j = 0; j < ncols; j++) {
        Column *c = &cols[j];
        Views *v = &views[j];
        c->kind = kinds[j];
        PyObject *spec = PyList_GET_ITEM(outputs, j);
        if (c->kind == K_SKIP) continue;
        if (c->kind < K_SKIP || c->kind > K_STR) {
            PyErr_Format(PyExc_ValueError, "column %zd: unknown kind %d", j, c->kind);
            return -1;
        }
        Py_ssize_t want = c->kind == K_STR ? 3 : 2;
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != want) {
            PyErr_Format(PyExc_TypeError, "column %zd: expected a tuple of %zd buffers", j, want);
            return -1;
        }
        if (c->kind == K_STR) {
            if (get_writable(PyTuple_GET_ITEM(spec, 0), &v->values, 4 * (capacity + 1), "offsets", j) < 0 ||
                get_writable(PyTuple_GET_ITEM(spec, 1), &v->data, data_len, "data", j) < 0 ||
                get_writable(PyTuple_GET_ITEM(spec, 2), &v->validity, capacity, "validity", j) < 0)
                return -1;
            c->data = v->data.buf;
            ((int32_t *)v->values.buf)[0] = 0;
        } else {
            if (get_writable(PyTuple_GET_ITEM(spec, 0), &v->values, 8 * capacity, "values", j) < 0 ||
                get_writable(PyTuple_GET_ITEM(spec, 1), &v->validity, capacity, "validity", j) < 0)
                return -1;
        }
        c->values = v->values.buf;
        c->valid = v->validity.buf;
    }
    return 0;
}

/* Store one field; returns a DECLINE_* code. */
static inline __attribute__((always_inline)) int store(Column *c, Py_ssize_t row, const char *f, Py_ssize_t len) {
    uint8_t *valid = c->valid;
    switch (c->kind) {
    case K_HEX: {
        uint64_t v;
        if (parse_hex(f, len, &v)) {
            ((uint64_t *)c->values)[row] = v;
            valid[row] = 1;
        } else {
            if (has_high_byte(f, len)) return DECLINE_NON_ASCII;
            ((uint64_t *)c->values)[row] = 0;
            valid[row] = 0;
            c->nulls++;
            if (!is_null_token(f, len)) c->invalid++;
        }
        return DECLINE_NONE;
    }
    case K_INT: {
        int64_t v;
        if (parse_int(f, len, &v)) {
            ((int64_t *)c->values)[row] = v;
            valid[row] = 1;
        } else if (is_null_token(f, len)) {
            ((int64_t *)c->values)[row] = 0;
            valid[row] = 0;
            c->nulls++;
        } else {
            return DECLINE_NUMBER;
        }
        return DECLINE_NONE;
    }
    case K_FLOAT: {
        double v;
        if (parse_float(f, len, &v)) {
            ((double *)c->values)[row] = v;
            valid[row] = 1;
        } else if (is_null_token(f, len)) {
            ((double *)c->values)[row] = 0.0;
            valid[row] = 0;
            c->nulls++;
        } else {
            return DECLINE_NUMBER;
        }
        return DECLINE_NONE;
    }
    case K_STR: {
        int32_t *offsets = (int32_t *)c->values;
        if (has_high_byte(f, len)) return DECLINE_NON_ASCII;
        if (is_null_token(f, len)) {
            valid[row] = 0;
            c->nulls++;
        } else {
            memcpy(c->data + c->data_used, f, (size_t)len);
            c->data_used += (int32_t)len;
            valid[row] = 1;
        }
        offsets[row + 1] = c->data_used;
        return DECLINE_NONE;
    }
    default:
        return DECLINE_NONE;
    }
}

/* The line/field state machine, fed one field at a time (in input order). */
typedef struct {
    Column *cols;
    Py_ssize_t ncols, capacity;
    Py_ssize_t rows;   /* complete rows stored */
    Py_ssize_t column; /* index of the next field within the current line */
    Py_ssize_t line;   /* 1-based line of the current field */
    int decline;
} Scanner;

static inline __attribute__((always_inline)) void on_field(Scanner *sc, const char *f, Py_ssize_t len, int ends_line) {
    Py_ssize_t j = sc->column;
    if (!ends_line) {
        if (j >= sc->ncols - 1) {
            sc->decline = DECLINE_FIELDS; /* too many fields */
            return;
        }
        sc->column = j + 1;
    } else {
        sc->line++;
        if (j == 0 && len == 0) return; /* an empty line: pyarrow skips it */
        if (j != sc->ncols - 1) {
            sc->decline = DECLINE_FIELDS; /* too few fields (or a row past the capacity) */
            return;
        }
        sc->column = 0;
    }
    Column *c = &sc->cols[j];
    if (c->kind != K_SKIP) {
        int d = store(c, sc->rows, f, len);
        if (d) {
            sc->decline = d;
            return;
        }
    }
    if (ends_line && ++sc->rows == sc->capacity) sc->column = sc->ncols; /* full: any more declines */
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer input;
    int delimiter, skip_first;
    const char *kinds;
    Py_ssize_t ncols, capacity;
    PyObject *outputs;
    if (!PyArg_ParseTuple(args, "y*ipy#O!n", &input, &delimiter, &skip_first, &kinds, &ncols,
                          &PyList_Type, &outputs, &capacity))
        return NULL;
    PyObject *result = NULL;
    Column *cols = NULL;
    Views *views = NULL;
    if (ncols < 1 || ncols > MAX_COLUMNS || PyList_GET_SIZE(outputs) != ncols || capacity < 0 ||
        delimiter < 1 || delimiter > 127) {
        PyErr_SetString(PyExc_ValueError, "scan: bad arguments (columns, outputs, capacity or delimiter)");
        goto done;
    }
    cols = PyMem_Calloc((size_t)ncols, sizeof(Column));
    views = PyMem_Calloc((size_t)ncols, sizeof(Views));
    if (!cols || !views) {
        PyErr_NoMemory();
        goto done;
    }
    const char *data = (const char *)input.buf;
    const Py_ssize_t n = input.len;
    if (setup_columns(cols, views, ncols, kinds, outputs, capacity, n) < 0) goto done;

    int decline = DECLINE_NONE;
    Py_ssize_t rows = 0, line = 0;
    const char delim = (char)delimiter;
    if (n > INT32_MAX) decline = DECLINE_TOO_BIG;
    else if (memchr(data, '"', (size_t)n) || memchr(data, '\r', (size_t)n)) decline = DECLINE_QUOTE_OR_CR;

    Py_BEGIN_ALLOW_THREADS
    Scanner sc = {cols, ncols, capacity, 0, capacity > 0 ? 0 : ncols, 1, DECLINE_NONE};
    if (!decline) {
        const char *p = data, *end = data + n;
        if (skip_first) { /* the header line */
            const char *nl = memchr(p, '\n', (size_t)n);
            p = nl ? nl + 1 : end;
            sc.line = 2;
        }
        const char *field = p;
        while (p < end && !sc.decline) {
            /* bit k of `mask`: p[k] ends a field (delimiter or newline) */
            uint32_t mask = 0;
            Py_ssize_t width = end - p < 16 ? end - p : 16;
#if defined(__SSE2__)
            if (width == 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)p);
                mask = (uint32_t)_mm_movemask_epi8(
                    _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(delim)), _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))));
            } else
#endif
            {
                for (Py_ssize_t k = 0; k < width; k++)
                    if (p[k] == delim || p[k] == '\n') mask |= 1u << k;
            }
            while (mask && !sc.decline) {
                const char *sep = p + __builtin_ctz(mask);
                mask &= mask - 1;
                on_field(&sc, field, sep - field, *sep == '\n');
                field = sep + 1;
            }
            p += width;
        }
        if (!sc.decline && (field < end || (sc.column > 0 && sc.column < ncols))) on_field(&sc, field, end - field, 1);
        decline = sc.decline;
        rows = sc.rows;
        line = sc.line;
    }
    Py_END_ALLOW_THREADS

    PyObject *nulls = PyList_New(ncols);
    PyObject *invalid = PyList_New(ncols);
    if (!nulls || !invalid) {
        Py_XDECREF(nulls);
        Py_XDECREF(invalid);
        goto done;
    }
    for (Py_ssize_t j = 0; j < ncols; j++) {
        PyObject *v = PyLong_FromSsize_t(cols[j].nulls);
        PyObject *w = PyLong_FromSsize_t(cols[j].invalid);
        if (!v || !w) {
            Py_XDECREF(v);
            Py_XDECREF(w);
            Py_DECREF(nulls);
            Py_DECREF(invalid);
            goto done;
        }
        PyList_SET_ITEM(nulls, j, v);
        PyList_SET_ITEM(invalid, j, w);
    }
    result = Py_BuildValue("nNinN", rows, nulls, decline, decline ? line : (Py_ssize_t)0, invalid);

done:
    if (views) release_views(views, ncols);
    PyMem_Free(cols);
    PyBuffer_Release(&input);
    return result;
}

static PyObject *count_lines(PyObject *self, PyObject *args) {
    Py_buffer input;
    if (!PyArg_ParseTuple(args, "y*", &input)) return NULL;
    Py_ssize_t lines = 0;
    const char *p = input.buf, *end = p + input.len;
    Py_BEGIN_ALLOW_THREADS
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&input);
    return PyLong_FromSsize_t(lines);
}

static PyMethodDef METHODS[] = {
    {"count_lines", count_lines, METH_VARARGS, "count_lines(data) -> number of newline bytes"},
    {"scan", scan, METH_VARARGS,
     "scan(data, delimiter, skip_first_line, kinds, outputs, capacity) -> (rows, nulls, decline, line, invalid)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_textscan",
    "Fast path of recprep's text sources: delimited text straight into typed column buffers.", -1,
    METHODS, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__textscan(void) {
    init_hex();
    return PyModule_Create(&MODULE);
}
