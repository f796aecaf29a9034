/*
 * _hex.h: hexadecimal ID parsing shared by the text scanner (sources/_textscan.c) and the
 * hex_to_int kernel (ops/_kernels.c), so both give exactly the op's documented result:
 *   1-16 hex digits (either case) -> the 64-bit value;
 *   more digits -> leading zeros skipped; up to 16 significant digits are the plain value, more
 *     (an MD5-style 32-digit hash, say) are folded into 64 bits: groups of 16 digits from the
 *     right, the highest group first, h = mix(h ^ group) from h = 0, with mix the splitmix64
 *     finaliser (ops/hashing.py) -- wide IDs are hashed, never dropped;
 *   anything else (empty, a byte that is not a hex digit) -> not an ID (null).
 * The reference of the rule is recprep/workloads/ops/hex_to_int.py::fold_hex.
 * Each including module calls init_hex() once when it loads.
 */
#ifndef RECPREP_HEX_H
#define RECPREP_HEX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* digit value, or 0x80 for a byte that is not a hex digit */
static unsigned char HEX[256];

static void init_hex(void) {
    memset(HEX, 0x80, sizeof HEX);
    for (int i = 0; i < 10; i++) HEX['0' + i] = (unsigned char)i;
    for (int i = 0; i < 6; i++) {
        HEX['a' + i] = (unsigned char)(10 + i);
        HEX['A' + i] = (unsigned char)(10 + i);
    }
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGH UINT64_C(0x8080808080808080)

/* Exactly 8 hex digits, eight at a time (one 64-bit word): 1 and the value, else 0. */
static inline int parse_hex8(const unsigned char *u, uint64_t *out) {
    uint64_t x;
    memcpy(&x, u, 8); /* byte i = the i-th digit (little-endian load) */
    if (x & HIGH) return 0;
    /* per byte b < 0x80: (b + (0x80 - lo)) has its high bit set iff b >= lo */
    uint64_t digit = ((x + 0x50 * ONES) & ~(x + 0x46 * ONES)) & HIGH;          /* '0'..'9' */
    uint64_t lower = x | 0x20 * ONES;                                          /* A-F -> a-f */
    uint64_t letter = ((lower + 0x1F * ONES) & ~(lower + 0x19 * ONES)) & HIGH; /* 'a'..'f' */
    if ((digit | letter) != HIGH) return 0;
    uint64_t nib = (x & 0x0F * ONES) + 9 * (letter >> 7); /* digit value per byte */
    /* bytes n0..n7 (n0 most significant) -> one 32-bit number */
    uint64_t y = ((nib << 4) | (nib >> 8)) & UINT64_C(0x00FF00FF00FF00FF);
    uint64_t z = ((y << 8) | (y >> 16)) & UINT64_C(0x0000FFFF0000FFFF);
    *out = ((z << 16) | (z >> 32)) & UINT64_C(0xFFFFFFFF);
    return 1;
}

/* splitmix64's finaliser (the mix of ops/hashing.py with salt 0). */
static inline uint64_t hex_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* More than 16 digits: see the rule at the top. 1 and the value, else 0. */
static int parse_hex_wide(const unsigned char *u, ptrdiff_t len, uint64_t *out) {
    ptrdiff_t i = 0;
    while (i < len && u[i] == '0') i++;
    ptrdiff_t n = len - i;
    unsigned bad = 0;
    uint64_t h = 0;
    if (n <= 16) { /* the plain value of the significant digits */
        for (; i < len; i++) {
            unsigned d = HEX[u[i]];
            bad |= d;
            h = (h << 4) | (d & 0xF);
        }
        *out = h;
        return !(bad & 0x80);
    }
    ptrdiff_t end = i + (n % 16 ? n % 16 : 16); /* the highest group: 1-16 digits */
    while (i < len) {
        uint64_t g = 0;
        for (; i < end; i++) {
            unsigned d = HEX[u[i]];
            bad |= d;
            g = (g << 4) | (d & 0xF);
        }
        h = hex_mix(h ^ g);
        end = i + 16;
    }
    *out = h;
    return !(bad & 0x80);
}

/* A hex ID -> 1 (value in *out); anything else -> 0 (the op makes that a null).
 * HEX holds the digit value, or 0x80 for a byte that is not a hex digit: no branch per digit. */
static inline int parse_hex(const char *f, ptrdiff_t len, uint64_t *out) {
    const unsigned char *u = (const unsigned char *)f;
    if (len == 8) return parse_hex8(u, out); /* Criteo's IDs */
    if (len > 16) return parse_hex_wide(u, len, out);
    if (len < 1) return 0;
    uint64_t v = 0;
    unsigned bad = 0;
    for (ptrdiff_t i = 0; i < len; i++) {
        unsigned d = HEX[u[i]];
        bad |= d;
        v = (v << 4) | (d & 0xF);
    }
    *out = v;
    return !(bad & 0x80);
}

#endif
