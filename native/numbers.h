/* Converting JSON numbers to float64, correctly rounded; included by speedups.c (static functions).
 *
 * parse_number(): any JSON number of up to 19 significant digits, byte by byte where it must.
 * parse_short_number(): -?D+.D+ in at most 16 bytes, every byte checked at once (SSE2).
 * convert_four(): four such numbers of at most 8 bytes at once (AVX2, chosen at run time).
 * All three give what a correctly rounding JSON parser gives, or refuse.
 */
#ifndef SPEEDUPS_NUMBERS_H
#define SPEEDUPS_NUMBERS_H

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "pow5_table.h"

#define MAX_DIGITS 19 /* any 19-digit decimal fits 64 bits */

static const double EXACT_POWERS_OF_TEN[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static inline int is_digit(unsigned char c) { return (unsigned char)(c - '0') < 10; }

/* w * 10^q correctly rounded to the nearest float64 (ties to even); w != 0, at most 19 digits.
 * Returns 0, or -1 when the value overflows (JSON parsers refuse it as infinity). */
static int decimal_to_double(uint64_t w, int64_t q, int negative, double *out) {
    if (q >= -22 && q <= 22 && w <= (UINT64_C(1) << 53)) { /* Clinger: both factors exact */
        double value = (double)w;
        value = q < 0 ? value / EXACT_POWERS_OF_TEN[-q] : value * EXACT_POWERS_OF_TEN[q];
        *out = negative ? -value : value;
        return 0;
    }
    if (q < POW5_SMALLEST_Q) { /* below half the smallest subnormal: zero, as JSON parsers give */
        *out = negative ? -0.0 : 0.0;
        return 0;
    }
    if (q > POW5_LARGEST_Q) return -1;
    /* Eisel-Lemire (fast_float's compute_float for binary64). */
    int lz = __builtin_clzll(w);
    w <<= lz;
    const uint64_t *power = &POW5_128[2 * (q - POW5_SMALLEST_Q)];
    unsigned __int128 first = (unsigned __int128)w * power[0];
    uint64_t high = (uint64_t)(first >> 64), low = (uint64_t)first;
    const uint64_t precision_mask = UINT64_MAX >> 55; /* 52 mantissa bits + 3 */
    if ((high & precision_mask) == precision_mask) {
        unsigned __int128 second = (unsigned __int128)w * power[1];
        uint64_t second_high = (uint64_t)(second >> 64);
        low += second_high;
        if (second_high > low) high++;
    }
    int upper_bit = (int)(high >> 63);
    int shift = upper_bit + 64 - 52 - 3;
    uint64_t mantissa = high >> shift;
    int32_t power2 = (int32_t)(((152170 + 65536) * (int32_t)q) >> 16) + 63 + upper_bit - lz + 1023;
    if (power2 <= 0) { /* subnormal, or zero */
        if (-power2 + 1 >= 64) {
            mantissa = 0;
            power2 = 0;
        } else {
            mantissa >>= -power2 + 1;
            mantissa += mantissa & 1;
            mantissa >>= 1;
            power2 = mantissa < (UINT64_C(1) << 52) ? 0 : 1;
        }
    } else {
        if (low <= 1 && q >= -4 && q <= 23 && (mantissa & 3) == 1 && (mantissa << shift) == high) {
            mantissa &= ~UINT64_C(1); /* exactly halfway: round to even */
        }
        mantissa += mantissa & 1;
        mantissa >>= 1;
        if (mantissa >= (UINT64_C(2) << 52)) {
            mantissa = UINT64_C(1) << 52;
            power2++;
        }
        mantissa &= ~(UINT64_C(1) << 52);
        if (power2 >= 0x7FF) return -1;
    }
    uint64_t bits = mantissa | ((uint64_t)power2 << 52) | ((uint64_t)(negative != 0) << 63);
    memcpy(out, &bits, sizeof bits);
    return 0;
}

static inline uint64_t load8(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* How many of the 8 bytes of t (a little-endian load, xor '0' in every byte) are digits, from the first. */
static inline int leading_digits(uint64_t t) {
    uint64_t not_digit = (((t & UINT64_C(0x7F7F7F7F7F7F7F7F)) + UINT64_C(0x7676767676767676)) | t) &
                         UINT64_C(0x8080808080808080);
    return not_digit ? __builtin_ctzll(not_digit) >> 3 : 8;
}

/* The value of the first n (1..8) digits of t, the first the most significant (SWAR). */
static inline uint64_t digits_value(uint64_t t, int n) {
    t <<= 8 * (8 - n);
    t = t * 10 + (t >> 8);
    t = ((t & UINT64_C(0x000000FF000000FF)) * (100 + (UINT64_C(1000000) << 32)) +
         ((t >> 16) & UINT64_C(0x000000FF000000FF)) * (1 + (UINT64_C(10000) << 32))) >> 32;
    return t;
}

static const uint64_t POWERS_OF_TEN[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

/* Append the digits at p to w (8 at a time while 8 bytes can be loaded before load_end); returns
 * the end of the run, *count the digits read. */
static inline const unsigned char *read_digits(const unsigned char *p, const unsigned char *end,
                                               const unsigned char *load_end, uint64_t *w, int *count) {
    while (load_end - p >= 8) {
        uint64_t t = load8(p) ^ UINT64_C(0x3030303030303030);
        int n = leading_digits(t);
        if (n == 0) return p;
        *w = *w * POWERS_OF_TEN[n] + digits_value(t, n);
        *count += n;
        p += n;
        if (n < 8 || *count > MAX_DIGITS) return p;
    }
    while (p < end && is_digit(*p)) {
        *w = *w * 10 + (uint64_t)(*p++ - '0');
        ++*count;
    }
    return p;
}

/* The JSON number that spans [p, end) exactly, or -1 (not a JSON number, more than 19
 * significant digits, beyond float64's range). Loads may read up to load_end. */
static inline int parse_number(const unsigned char *p, const unsigned char *end, const unsigned char *load_end,
                               double *out, int *has_fraction) {
    int negative = 0, digits = 0, fractional = 0;
    uint64_t w = 0;
    int64_t q = 0;
    if (*p == '-') {
        negative = 1;
        if (++p == end) return -1;
    }
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        p = read_digits(p, end, load_end, &w, &digits);
    } else {
        return -1;
    }
    if (p < end && *p == '.') {
        fractional = 1;
        if (++p == end || !is_digit(*p)) return -1;
        const unsigned char *first = p;
        if (w == 0) {
            while (p < end && *p == '0') p++; /* leading zeros of a fraction are not significant */
        }
        p = read_digits(p, end, load_end, &w, &digits);
        q -= p - first;
    }
    if (digits > MAX_DIGITS) return -1;
    if (p < end && (*p == 'e' || *p == 'E')) {
        fractional = 1;
        int exponent_negative = 0;
        int64_t exponent = 0;
        if (++p < end && (*p == '+' || *p == '-')) exponent_negative = *p++ == '-';
        if (p == end || !is_digit(*p)) return -1;
        while (p < end && is_digit(*p)) {
            if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
            p++;
        }
        q += exponent_negative ? -exponent : exponent;
    }
    if (p != end) return -1;
    *has_fraction |= fractional;
    if (w == 0) { /* "-0" is the integer 0; "-0.0" is negative zero */
        *out = negative && fractional ? -0.0 : 0.0;
        return 0;
    }
    return decimal_to_double(w, q, negative, out);
}

#ifdef __SSE2__
/* The common number, -?D+.D+ with 1 to 8 digits on either side of the point, in the `length`
 * (at most 16) bytes at p, which may be loaded 16 at a time: 1 when parsed into *out, else 0
 * (then the general parser decides). All bytes are checked at once instead of one branch each:
 * under mixed lengths and signs those branches mispredict, and they cost most of the time. */
static inline __attribute__((always_inline)) int parse_short_number(const unsigned char *p, unsigned length,
                                                                    double *out) {
    __m128i x = _mm_loadu_si128((const __m128i *)p);
    __m128i d = _mm_sub_epi8(x, _mm_set1_epi8('0'));
    unsigned valid = (1u << length) - 1;
    unsigned digit = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));
    unsigned point = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('.'))) & valid;
    unsigned negative = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('-'))) & 1;
    if (point == 0 || (point & (point - 1)) || ((digit & valid) | point | negative) != valid) return 0;
    unsigned at = (unsigned)__builtin_ctz(point);
    unsigned integer_digits = at - negative, fraction_digits = length - at - 1;
    /* both from 1 to 8 (then w < 10^15 < 2^53, and Clinger's division is exact), no leading zero */
    if (integer_digits - 1 > 7 || fraction_digits - 1 > 7 || (integer_digits > 1 && p[negative] == '0')) return 0;
    uint64_t w;
    if (length - negative <= 8) { /* one 8-byte word: close the point's gap, then convert once */
        uint64_t t = load8(p + negative) ^ UINT64_C(0x3030303030303030);
        uint64_t integer_bytes = (UINT64_C(1) << (8 * integer_digits)) - 1; /* integer_digits <= 7 here */
        t = ((t & integer_bytes) << 8) | (t & ~(integer_bytes << 8) & ~integer_bytes);
        w = digits_value(t, (int)(length - negative)); /* the integer digits behind one leading zero */
    } else {
        w = digits_value(load8(p + negative) ^ UINT64_C(0x3030303030303030), (int)integer_digits) *
                POWERS_OF_TEN[fraction_digits] +
            digits_value(load8(p + at + 1) ^ UINT64_C(0x3030303030303030), (int)fraction_digits);
    }
    double value = (double)w / EXACT_POWERS_OF_TEN[fraction_digits];
    *out = negative ? -value : value;
    return 1;
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_BATCH 1
static int have_batch; /* convert_four() runs: the CPU has AVX2 (set at import; set_batch() for tests) */

/* Four short numbers at once (AVX2): lane k is words[k], the first 8 bytes at a number that
 * takes lengths[k] (1 to 8) of them, in the form -?D+.D+ without a leading zero. Writes lane k's
 * value to out[k] and returns the mask of lanes that were not of that form (bit k), which the
 * caller parses on their own. The same steps as digits_value(), on four 64-bit lanes. */
__attribute__((target("avx2"))) static unsigned convert_four(const uint64_t words[4], const int64_t lengths[4],
                                                            double out[4]) {
    const __m256i ones = _mm256_set1_epi64x(-1), high_bits = _mm256_set1_epi64x((long long)0x8080808080808080ULL);
    const __m256i low7 = _mm256_set1_epi64x(0x7F7F7F7F7F7F7F7FLL);
    __m256i length = _mm256_loadu_si256((const __m256i *)lengths);
    __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)words), _mm256_set1_epi64x(0x3030303030303030LL));
    __m256i bytes = _mm256_srlv_epi64(ones, _mm256_sub_epi64(_mm256_set1_epi64x(64), _mm256_slli_epi64(length, 3)));
    __m256i valid_high = _mm256_and_si256(bytes, high_bits);
    /* high bit of every byte that is not a digit; of every byte that is not the point ('.' ^ '0') */
    __m256i not_digit = _mm256_and_si256(
        _mm256_or_si256(_mm256_add_epi64(_mm256_and_si256(x, low7), _mm256_set1_epi64x(0x7676767676767676LL)), x),
        high_bits);
    __m256i z = _mm256_xor_si256(x, _mm256_set1_epi64x(0x1E1E1E1E1E1E1E1ELL));
    __m256i not_point = _mm256_and_si256(_mm256_or_si256(_mm256_add_epi64(_mm256_and_si256(z, low7), low7), z),
                                         high_bits);
    __m256i point = _mm256_andnot_si256(not_point, valid_high);
    __m256i negative = _mm256_cmpeq_epi64(_mm256_and_si256(x, _mm256_set1_epi64x(0xFF)),
                                          _mm256_set1_epi64x('-' ^ '0')); /* all ones where the sign is */
    __m256i minus_bit = _mm256_and_si256(negative, _mm256_set1_epi64x(0x80));
    /* valid: the non-digits among the number's bytes are exactly its point and its sign, and one point */
    __m256i bad = _mm256_xor_si256(_mm256_and_si256(not_digit, valid_high), _mm256_or_si256(point, minus_bit));
    __m256i zero = _mm256_setzero_si256();
    __m256i no_point = _mm256_cmpeq_epi64(point, zero);
    __m256i two_points = _mm256_andnot_si256(_mm256_cmpeq_epi64(_mm256_and_si256(point, _mm256_sub_epi64(point,
                                                  _mm256_set1_epi64x(1))), zero), ones);
    /* at: bytes before the point (its index); the sum of the bytes of (point - 1) >> 7 & 0x01.. */
    __m256i below = _mm256_and_si256(_mm256_srli_epi64(_mm256_sub_epi64(point, _mm256_set1_epi64x(1)), 7),
                                     _mm256_set1_epi64x(0x0101010101010101LL));
    __m256i at = _mm256_sad_epu8(below, zero);
    __m256i sign = _mm256_and_si256(negative, _mm256_set1_epi64x(1));
    __m256i integer_digits = _mm256_sub_epi64(at, sign);
    __m256i fraction_digits = _mm256_sub_epi64(_mm256_sub_epi64(length, at), _mm256_set1_epi64x(1));
    /* both at least 1 (the point is neither first nor last); no leading zero before a second digit */
    __m256i empty_side = _mm256_or_si256(_mm256_cmpgt_epi64(_mm256_set1_epi64x(1), integer_digits),
                                         _mm256_cmpgt_epi64(_mm256_set1_epi64x(1), fraction_digits));
    __m256i first_digit = _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_slli_epi64(sign, 3)), _mm256_set1_epi64x(0xFF));
    __m256i leading_zero = _mm256_and_si256(_mm256_cmpeq_epi64(first_digit, zero),
                                            _mm256_cmpgt_epi64(integer_digits, _mm256_set1_epi64x(1)));
    __m256i rejected = _mm256_or_si256(_mm256_or_si256(_mm256_andnot_si256(_mm256_cmpeq_epi64(bad, zero), ones),
                                                       _mm256_or_si256(no_point, two_points)),
                                       _mm256_or_si256(empty_side, leading_zero));
    /* close the point's gap: the sign and integer bytes move up one byte, the sign becomes a zero digit */
    __m256i before = _mm256_sub_epi64(_mm256_sllv_epi64(_mm256_set1_epi64x(1), _mm256_slli_epi64(at, 3)),
                                      _mm256_set1_epi64x(1));
    __m256i integer_part = _mm256_andnot_si256(_mm256_and_si256(negative, _mm256_set1_epi64x(0xFF)),
                                               _mm256_and_si256(x, before));
    __m256i through_point = _mm256_or_si256(_mm256_slli_epi64(before, 8), _mm256_set1_epi64x(0xFF));
    __m256i t = _mm256_or_si256(_mm256_slli_epi64(integer_part, 8), _mm256_andnot_si256(through_point, x));
    /* digits_value(t, length): the first `length` bytes (one is the leading zero the point left) */
    t = _mm256_sllv_epi64(t, _mm256_slli_epi64(_mm256_sub_epi64(_mm256_set1_epi64x(8), length), 3));
    t = _mm256_add_epi64(_mm256_add_epi64(_mm256_slli_epi64(t, 3), _mm256_slli_epi64(t, 1)), _mm256_srli_epi64(t, 8));
    __m256i pairs = _mm256_set1_epi64x(0x000000FF000000FFLL);
    __m256i a = _mm256_and_si256(t, pairs), b = _mm256_and_si256(_mm256_srli_epi64(t, 16), pairs);
    __m256i w = _mm256_add_epi64(
        _mm256_add_epi64(_mm256_mul_epu32(a, _mm256_set1_epi64x(1000000)),
                         _mm256_mul_epu32(_mm256_srli_epi64(a, 32), _mm256_set1_epi64x(100))),
        _mm256_add_epi64(_mm256_mul_epu32(b, _mm256_set1_epi64x(10000)), _mm256_srli_epi64(b, 32)));
    /* w < 10^7: exact as a double (2^52 + w, minus 2^52), and Clinger's division is exact */
    __m256d magic = _mm256_castsi256_pd(_mm256_set1_epi64x(0x4330000000000000LL));
    __m256d value = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(w, _mm256_castpd_si256(magic))), magic);
    __m256d divisor = _mm256_i64gather_pd(EXACT_POWERS_OF_TEN, fraction_digits, 8);
    value = _mm256_div_pd(value, divisor);
    value = _mm256_or_pd(value, _mm256_castsi256_pd(_mm256_and_si256(negative, _mm256_set1_epi64x(INT64_MIN))));
    _mm256_storeu_pd(out, value);
    return (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(rejected));
}
#endif

#ifndef HAVE_BATCH
static const int have_batch = 0;
#endif

#endif /* SPEEDUPS_NUMBERS_H */
