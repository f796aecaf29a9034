/*
 * _buffers.h: the optional input buffers recprep's C kernels take (a validity bitmap or byte
 * mask that is None when every row is valid), shared by ops/_kernels.c and parquet/_encode.c.
 */
#ifndef RECPREP_BUFFERS_H
#define RECPREP_BUFFERS_H

#include <Python.h>

/* None leaves `view` empty (view->buf NULL); anything else must be a buffer of at least
 * `min_bytes` bytes, else ValueError(`too_short`). Returns 0, or -1 with the error set. */
static int optional_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t min_bytes, const char *too_short) {
    if (obj == Py_None) return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
    if (view->len < min_bytes) {
        PyErr_SetString(PyExc_ValueError, too_short);
        return -1;
    }
    return 0;
}

#endif
