/* app._speedups: the C helpers of the request path (built by `make`; the server runs without them).
 *
 * parse(text, start=0, stop=len(text)) -> (bytearray of float64, shape, has_fraction) | None
 *   One pass over the JSON text of a numeric tensor: grammar, regular nesting, shape, numbers.
 *   text[start:stop] is a JSON array of numbers, nested to any depth up to 32. The answer is None
 *   whenever it is not certainly a regular array of numbers that this code converts exactly as a
 *   JSON parser would (invalid JSON, ragged or empty arrays, a number of more than 19 significant
 *   digits, a number beyond float64's range): the caller then takes its generic path, which
 *   words every error. Numbers are correctly rounded: Clinger's exact fast path when the digits
 *   fit 53 bits and the power of ten is exact, else the Eisel-Lemire algorithm with 128-bit
 *   powers of five (pow5_table.py), in numbers.h. No Python object is built per number, and
 *   the GIL is held throughout (releasing it measured no faster under load, with more hand-offs).
 *
 * set_batch(enabled) -> bool
 *   Whether short numbers are converted four at a time (AVX2, the default where the CPU has it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "numbers.h"

#define MAX_DIMS 32

/* Bit i: byte p[i] (of 64) cannot be part of a JSON number: a comma, bracket, space or anything
 * else that is not a digit, '+', '-', '.', 'e' or 'E'. Numbers are the runs between these bits.
 * *commas: the same for the commas alone. */
static inline uint64_t non_number_bytes(const unsigned char *p, uint64_t *commas) {
    uint64_t mask = 0, comma_mask = 0;
#ifdef __SSE2__
    const __m128i low = _mm_set1_epi8(0x2B), high = _mm_set1_epi8(0x39); /* '+' .. '9' */
    for (int i = 0; i < 4; i++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + 16 * i));
        __m128i in_range = _mm_cmpeq_epi8(_mm_min_epu8(_mm_max_epu8(x, low), high), x);
        __m128i comma = _mm_cmpeq_epi8(x, _mm_set1_epi8(','));
        __m128i comma_or_slash = _mm_or_si128(comma, _mm_cmpeq_epi8(x, _mm_set1_epi8('/')));
        comma_mask |= (uint64_t)(uint16_t)_mm_movemask_epi8(comma) << (16 * i);
        __m128i exponent = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('e')), _mm_cmpeq_epi8(x, _mm_set1_epi8('E')));
        __m128i number = _mm_or_si128(_mm_andnot_si128(comma_or_slash, in_range), exponent);
        mask |= (uint64_t)(uint16_t)~_mm_movemask_epi8(number) << (16 * i);
    }
#else
    for (int i = 0; i < 64; i++) {
        unsigned char c = p[i];
        int number = is_digit(c) || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
        mask |= (uint64_t)!number << i;
        comma_mask |= (uint64_t)(c == ',') << i;
    }
#endif
    *commas = comma_mask;
    return mask;
}

/* The float64 buffer parse_tensor() fills: a bytearray, grown as needed. */
typedef struct {
    PyObject *buffer; /* a bytearray of float64 */
    double *values;
    Py_ssize_t capacity;
} Output;

/* Room for twice as many numbers: 0, or -2 with MemoryError set. */
static int grow(Output *out) {
    Py_ssize_t capacity = out->capacity * 2;
    if (PyByteArray_Resize(out->buffer, capacity * (Py_ssize_t)sizeof(double)) < 0) return -2;
    out->values = (double *)PyByteArray_AS_STRING(out->buffer);
    out->capacity = capacity;
    return 0;
}

/* Short numbers whose conversion waits to be done four at a time, after the walk of a block
 * (deciding per number when four are there would mispredict once in about three numbers).
 * Their values go to values[base ...] in order, so a grown buffer still takes them. */
#define PENDING_MAX 40 /* 33 end in a block, 3 carried over from the one before */
typedef struct {
    uint64_t words[PENDING_MAX];
    int64_t lengths[PENDING_MAX];
    Py_ssize_t starts[PENDING_MAX];
    Py_ssize_t base;
    int count;
} Pending;

/* Queue the short number text[start:start+size] for values[index] (indexes follow each other). */
static inline void queue_number(Pending *pending, const unsigned char *text, Py_ssize_t start, Py_ssize_t size,
                                Py_ssize_t index) {
    if (pending->count == 0) pending->base = index;
    pending->words[pending->count] = load8(text + start);
    pending->lengths[pending->count] = size;
    pending->starts[pending->count++] = start;
}

/* Convert the pending numbers four at a time and, with `all`, the last one to three on their own
 * (else they wait for the next block); a number the batch refuses is parsed on its own.
 * 0, or -1 when one is not a number this parser takes. */
static int flush(Pending *pending, int all, const unsigned char *text, const unsigned char *text_end, double *values,
                 int *fraction) {
    int k = 0;
#ifdef HAVE_BATCH
    for (; k + 4 <= pending->count; k += 4) {
        unsigned refused = convert_four(&pending->words[k], &pending->lengths[k], &values[pending->base + k]);
        *fraction = 1;
        while (refused) {
            int lane = k + __builtin_ctz(refused);
            refused &= refused - 1;
            const unsigned char *start = text + pending->starts[lane];
            if (parse_number(start, start + pending->lengths[lane], text_end, &values[pending->base + lane],
                             fraction) < 0)
                return -1;
        }
    }
#endif
    if (all) {
        for (; k < pending->count; k++) {
            const unsigned char *start = text + pending->starts[k];
            if (parse_number(start, start + pending->lengths[k], text_end, &values[pending->base + k], fraction) < 0)
                return -1;
        }
    }
    int left = pending->count - k;
    for (int i = 0; i < left; i++) {
        pending->words[i] = pending->words[k + i];
        pending->lengths[i] = pending->lengths[k + i];
        pending->starts[i] = pending->starts[k + i];
    }
    pending->base += k;
    pending->count = left;
    return 0;
}

/* The regular, non-empty array of numbers in text[0:length]: its numbers are written to
 * `out` (grown as needed), its shape to `shape` and its depth to *ndim; 0, -1 (not such an array),
 * or -2 (no memory: MemoryError set). Every array at nesting level k must have as many entries
 * as the first one there, and every number must sit at the level of the first number.
 * Per 64 bytes, SIMD finds the bytes that cannot be part of a number; walking them, where each
 * number ends is known before it is parsed. The common step, a short number then a comma or a
 * bracket inside an array of numbers, only queues the number for convert_four(). */
static int parse_tensor(const unsigned char *text, Py_ssize_t length, Output *out, Py_ssize_t *written_out,
                        Py_ssize_t shape[MAX_DIMS], int *ndim, int *has_fraction) {
    const unsigned char *text_end = text + length;
    Py_ssize_t counts[MAX_DIMS + 1]; /* entries so far in the open array at each level */
    Py_ssize_t written = 0, token = 0;   /* token: where the current run of number bytes began */
    Py_ssize_t leaf_start = 0;           /* `written` when the open array of numbers began */
    int depth = 0, leaf = -1, expect_value = 1, done = 0, fraction = 0;
    Pending pending;
    pending.count = 0;
    for (int k = 0; k < MAX_DIMS; k++) shape[k] = 0;
    for (Py_ssize_t block = 0; block < length; block += 64) {
        uint64_t separators, commas;
        if (length - block >= 64) {
            separators = non_number_bytes(text + block, &commas);
        } else {
            unsigned char tail[64];
            memset(tail, ' ', sizeof tail);
            memcpy(tail, text + block, (size_t)(length - block));
            separators = non_number_bytes(tail, &commas) & (UINT64_MAX >> (64 - (length - block)));
        }
        while (out->capacity - written < 33) { /* a block ends at most 33 numbers (32, and one begun before) */
            if (grow(out) < 0) return -2;
        }
        double *values = out->values;
        /* The common steps read 8 (in fours) or 16 bytes from where a number starts, inside an array
         * of numbers: every number that ends in this block has them. */
        int in_leaf = depth == leaf && expect_value;
        int batch = have_batch && block + 64 + 8 <= length, single = block + 64 + 16 <= length;
        if (in_leaf && batch && separators == commas) { /* the usual block: short numbers between commas */
            while (separators) {
                Py_ssize_t at = block + __builtin_ctzll(separators), size = at - token;
                if ((size_t)(size - 1) >= 8) break; /* this one, and the rest, take the walk below */
                separators &= separators - 1;
                queue_number(&pending, text, token, size, written++);
                token = at + 1;
            }
        }
        while (separators) {
            Py_ssize_t at = block + __builtin_ctzll(separators);
            separators &= separators - 1;
            unsigned char c = text[at];
            Py_ssize_t size = at - token;
            if (in_leaf && (size_t)(size - 1) < 8 && batch && (c == ',' || c == ']')) { /* the common step */
                queue_number(&pending, text, token, size, written++);
                token = at + 1;
                if (c == ',') continue;
                expect_value = 0; /* then the bracket below closes the array */
            } else if (size > 0) { /* any other number in text[token:at] */
                if (pending.count && flush(&pending, 1, text, text_end, values, &fraction) < 0) return -1;
                if (!expect_value || depth == 0 || done) return -1;
                if (leaf < 0) leaf = depth;
                else if (depth != leaf) return -1;
#ifdef __SSE2__
                if (!(single && size <= 16 && parse_short_number(text + token, (unsigned)size, &values[written])))
#endif
                    if (parse_number(text + token, text + at, text_end, &values[written], &fraction) < 0) return -1;
                written++;
                expect_value = 0;
                token = at + 1;
            } else {
                token = at + 1;
            }
            if (!is_space(c)) {
                if (done) return -1;
                if (c == ',') {
                    if (expect_value || depth == 0) return -1;
                    expect_value = 1;
                } else if (c == '[') {
                    if (!expect_value || (leaf >= 0 && depth >= leaf) || depth == MAX_DIMS) return -1;
                    if (depth > 0) counts[depth]++;
                    counts[++depth] = 0;
                    leaf_start = written;
                } else if (c == ']') {
                    if (depth == 0 || expect_value) return -1; /* empty, or after a comma */
                    Py_ssize_t entries = depth == leaf ? written - leaf_start : counts[depth];
                    Py_ssize_t *expected = &shape[depth - 1];
                    if (*expected == 0) *expected = entries;
                    else if (*expected != entries) return -1;
                    done = --depth == 0;
                } else {
                    return -1;
                }
            }
            in_leaf = depth == leaf && expect_value;
        }
        if (pending.count >= 4 && flush(&pending, 0, text, text_end, values, &fraction) < 0) return -1;
    }
    if (pending.count && flush(&pending, 1, text, text_end, out->values, &fraction) < 0) return -1;
    if (token < length || !done || leaf < 0) return -1;
    *ndim = leaf;
    *written_out = written;
    *has_fraction = fraction;
    return 0;
}

static PyObject *parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs < 1 || nargs > 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse(text: bytes, start: int = 0, stop: int = len(text))");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]), start = 0, stop = size;
    if (nargs > 1 && (start = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred()) return NULL;
    if (nargs > 2 && (stop = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred()) return NULL;
    if (start < 0 || stop > size || start > stop) {
        PyErr_SetString(PyExc_ValueError, "parse(): start and stop must satisfy 0 <= start <= stop <= len(text)");
        return NULL;
    }
    const unsigned char *text = (const unsigned char *)PyBytes_AS_STRING(args[0]) + start;
    Py_ssize_t length = stop - start;
    Output out = {NULL, NULL, length / 4 + 16}; /* most numbers take 4 bytes or more with their comma */
    out.buffer = PyByteArray_FromStringAndSize(NULL, out.capacity * (Py_ssize_t)sizeof(double));
    if (out.buffer == NULL) return NULL;
    out.values = (double *)PyByteArray_AS_STRING(out.buffer);
    Py_ssize_t shape[MAX_DIMS], written = 0;
    int ndim = 0, has_fraction = 0;
    int status = parse_tensor(text, length, &out, &written, shape, &ndim, &has_fraction);
    if (status < 0) {
        Py_DECREF(out.buffer);
        if (status == -2) return NULL;
        Py_RETURN_NONE;
    }
    if (PyByteArray_Resize(out.buffer, written * (Py_ssize_t)sizeof(double)) < 0) {
        Py_DECREF(out.buffer);
        return NULL;
    }
    PyObject *buffer = out.buffer;
    PyObject *dims = PyTuple_New(ndim);
    if (dims == NULL) {
        Py_DECREF(buffer);
        return NULL;
    }
    for (int k = 0; k < ndim; k++) {
        PyObject *size = PyLong_FromSsize_t(shape[k]);
        if (size == NULL) {
            Py_DECREF(dims);
            Py_DECREF(buffer);
            return NULL;
        }
        PyTuple_SET_ITEM(dims, k, size);
    }
    return Py_BuildValue("(NNO)", buffer, dims, has_fraction ? Py_True : Py_False);
}

static PyObject *set_batch(PyObject *module, PyObject *arg) {
    (void)module;
    int enable = PyObject_IsTrue(arg);
    if (enable < 0) return NULL;
#ifdef HAVE_BATCH
    have_batch = enable && __builtin_cpu_supports("avx2");
#endif
    return PyBool_FromLong(have_batch);
}

static PyMethodDef methods[] = {
    {"set_batch", set_batch, METH_O,
     "set_batch(enabled) -> bool: convert short numbers four at a time (AVX2, the default where the CPU has it)\n"
     "or one at a time; returns whether batches are now in use. For tests of both paths."},
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL,
     "parse(text: bytes, start=0, stop=len(text)) -> (bytearray of float64, shape, has_fraction), or None\n"
     "when text[start:stop] is not certainly a regular JSON array of numbers this parser converts exactly."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_speedups",
                                        "C helpers of the request path (native/speedups.c).", -1, methods,
                                        NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) {
#ifdef HAVE_BATCH
    __builtin_cpu_init();
    have_batch = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module_def);
}
