/*
 * strbuf.c — the bounded appender (strbuf.h).
 *
 * Every append is all or nothing. For formatted text that means letting vsnprintf write into
 * the space that is left (it never writes more than that, NUL included) and, when its return
 * value says the whole text needed more, putting the NUL back where the text ended before:
 * what it wrote past that NUL is outside the text, and the buffer itself is never exceeded.
 */
#include "common/strbuf.h"

#include <stdio.h>
#include <string.h>

#include "switchboard.h"

void sb_strbuf_init(sb_strbuf *sb, char *buf, size_t cap) { sb_strbuf_resume(sb, buf, cap, 0); }

void sb_strbuf_resume(sb_strbuf *sb, char *buf, size_t cap, size_t len) {
  sb->buf = buf;
  sb->cap = cap;
  sb->len = 0;
  sb->overflow = 0;
  if (cap == 0 || len >= cap) {
    sb->overflow = 1;
    if (cap) buf[0] = '\0';
    return;
  }
  sb->len = len;
  buf[len] = '\0';
}

/* Room for n more bytes and the NUL after them (n < cap - len, written so it cannot wrap). */
static int fits(const sb_strbuf *sb, size_t n) {
  return !sb->overflow && sb->cap > 0 && n < sb->cap - sb->len;
}

int sb_strbuf_append(sb_strbuf *sb, const void *bytes, size_t n) {
  if (!fits(sb, n)) {
    sb->overflow = 1;
    return SB_ENOMEM;
  }
  if (n) memcpy(sb->buf + sb->len, bytes, n);
  sb->len += n;
  sb->buf[sb->len] = '\0';
  return 0;
}

int sb_strbuf_appends(sb_strbuf *sb, const char *s) { return sb_strbuf_append(sb, s, strlen(s)); }

int sb_strbuf_vappendf(sb_strbuf *sb, const char *fmt, va_list ap) {
  if (!fits(sb, 0)) {
    sb->overflow = 1;
    return SB_ENOMEM;
  }
  size_t room = sb->cap - sb->len; /* > 0: fits(sb, 0) */
  int r = vsnprintf(sb->buf + sb->len, room, fmt, ap);
  if (r < 0 || (size_t)r >= room) {
    sb->buf[sb->len] = '\0'; /* the piece goes whole or not at all */
    sb->overflow = 1;
    return SB_ENOMEM;
  }
  sb->len += (size_t)r;
  return 0;
}

int sb_strbuf_appendf(sb_strbuf *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = sb_strbuf_vappendf(sb, fmt, ap);
  va_end(ap);
  return r;
}
