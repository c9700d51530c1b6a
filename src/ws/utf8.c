/*
 * utf8.c — incremental UTF-8 validation.
 *
 * The state packs three bytes: how many continuation bytes are still due (low byte), and the
 * inclusive range the *next* byte must fall in (second and third bytes). Only the first
 * continuation byte after a lead byte is ever narrower than 80..BF (Unicode table 3-7):
 *   E0 → A0..BF (no overlong 3-byte forms)   ED → 80..9F (no surrogates)
 *   F0 → 90..BF (no overlong 4-byte forms)   F4 → 80..8F (nothing past U+10FFFF)
 * and C0, C1 and F5..FF can never appear. Checking the range of each byte as it arrives is what
 * makes the validator fail fast: it rejects at the first byte no valid text could contain.
 * Between sequences, runs of ASCII are skipped eight bytes at a time.
 */
#include <string.h>

#include "ws/utf8.h"

#define STATE(rem, lo, hi) ((uint32_t)(rem) | ((uint32_t)(lo) << 8) | ((uint32_t)(hi) << 16))

sb_utf8_state sb_utf8_feed(sb_utf8_state st, const uint8_t *s, size_t n) {
  size_t i = 0;
  if (st == SB_UTF8_REJECT) return st;
  while (i < n) {
    if (st == SB_UTF8_ACCEPT) {
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i == n) break;
      uint8_t b = s[i++];
      if (b < 0x80) continue;
      if (b < 0xC2) return SB_UTF8_REJECT; /* stray continuation, or overlong C0/C1 */
      if (b < 0xE0) st = STATE(1, 0x80, 0xBF);
      else if (b < 0xF0) st = STATE(2, b == 0xE0 ? 0xA0 : 0x80, b == 0xED ? 0x9F : 0xBF);
      else if (b < 0xF5) st = STATE(3, b == 0xF0 ? 0x90 : 0x80, b == 0xF4 ? 0x8F : 0xBF);
      else return SB_UTF8_REJECT;
    } else {
      uint8_t b = s[i++];
      if (b < ((st >> 8) & 0xff) || b > ((st >> 16) & 0xff)) return SB_UTF8_REJECT;
      uint32_t rem = (st & 0xff) - 1;
      st = rem ? STATE(rem, 0x80, 0xBF) : SB_UTF8_ACCEPT;
    }
  }
  return st;
}

int sb_utf8_valid(const uint8_t *s, size_t n) {
  return sb_utf8_feed(SB_UTF8_ACCEPT, s, n) == SB_UTF8_ACCEPT;
}
