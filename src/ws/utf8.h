/*
 * utf8.h — incremental, fail-fast UTF-8 validation (RFC 3629, Unicode table 3-7).
 *
 * The validator keeps its position inside a multi-byte sequence in a small state, so a text
 * message may be checked chunk by chunk and fragment by fragment, and it reports an error at
 * the first byte that cannot start or continue a valid sequence: overlong forms, surrogates
 * (U+D800..U+DFFF) and code points past U+10FFFF are all refused as early as the bytes allow.
 */
#ifndef SB_WS_UTF8_H
#define SB_WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* 0 between sequences; otherwise encodes what the next continuation byte must look like. */
typedef uint32_t sb_utf8_state;

#define SB_UTF8_ACCEPT 0u
#define SB_UTF8_REJECT 0xffffffffu

/* Feeds s[0..n). Returns the new state: SB_UTF8_REJECT as soon as the input is invalid (and
 * from then on), SB_UTF8_ACCEPT when it ends between sequences, another value when it ends
 * inside a sequence. */
sb_utf8_state sb_utf8_feed(sb_utf8_state st, const uint8_t *s, size_t n);

/* 1 if s[0..n) is complete, valid UTF-8. */
int sb_utf8_valid(const uint8_t *s, size_t n);

#endif
