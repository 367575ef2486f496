/*  unicode - see unicode.h */
#include "model/unicode.h"

int lmp_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    int     k;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0x40) == 0) goto bad; /* stray continuation byte */
    if ((c & 0x20) == 0) {
        k   = 2;
        *cp = c & 0x1F;
    } else if ((c & 0x10) == 0) {
        k   = 3;
        *cp = c & 0x0F;
    } else if ((c & 0x08) == 0) {
        k   = 4;
        *cp = c & 0x07;
    } else
        goto bad;
    if ((size_t)k > n) goto bad;
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    if (*cp > 0x10FFFF) goto bad;
    return k;
bad:
    *cp = 0xFFFD;
    return 1;
}

int lmp_utf8_encode(uint32_t cp, char out[4]) {
    if (cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int range_find(const struct lmp_urange *r, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo)
            hi = mid - 1;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return mid;
    }
    return -1;
}

enum lmp_uclass lmp_unicode_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return LMP_UCLASS_LETTER;
        if (cp >= '0' && cp <= '9') return LMP_UCLASS_NUMBER;
        return LMP_UCLASS_OTHER;
    }
    int i = range_find(lmp_ucd_classes, lmp_ucd_n_classes, cp);
    return i < 0 ? LMP_UCLASS_OTHER : (enum lmp_uclass)lmp_ucd_classes[i].cls;
}

bool lmp_unicode_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return range_find(lmp_ucd_white_space, lmp_ucd_n_white_space, cp) >= 0;
}

/* GPT-2 keeps the printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) as
 * themselves and maps the other 68 bytes, in order, to U+0100 onwards. */
static bool gpt2_keeps(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t lmp_gpt2_byte_to_char(uint8_t b) {
    if (gpt2_keeps(b)) return b;
    if (b <= 0x20) return 0x100 + b;               /* ranks 0..32 */
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F); /* 0x7F..0xA0: ranks 33..66 */
    return 0x100 + 67;                             /* 0xAD */
}

int lmp_gpt2_char_to_byte(uint32_t cp) {
    if (cp < 0x100) return gpt2_keeps(cp) ? (int)cp : -1;
    if (cp < 0x100 + 33) return (int)(cp - 0x100);
    if (cp < 0x100 + 67) return (int)(cp - 0x100 - 33 + 0x7F);
    if (cp == 0x100 + 67) return 0xAD;
    return -1;
}
