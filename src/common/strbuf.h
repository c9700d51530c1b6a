/*
 * strbuf.h — a bounded appender over a fixed buffer the caller owns.
 *
 * Why it exists: adding up snprintf's results into a length `n` (and passing `cap - n` to the
 * next call) is wrong as soon as one call is cut short, because snprintf returns the length it
 * *would* have written; `n` then passes `cap`, `cap - n` wraps to a huge size_t and the next
 * call writes past the buffer. An sb_strbuf
 * never writes past its end, and it never cuts a piece silently either: an append that does
 * not fit whole changes nothing and marks the buffer as overflowed. The mark is sticky (every
 * later append is refused too), so a caller can append a whole message and check once at the
 * end, and turn an overflow into a clear error instead of sending a truncated answer.
 *
 * The text is kept NUL-terminated whenever cap > 0, so it holds at most cap - 1 bytes. Bytes
 * appended with sb_strbuf_append may include NULs; `len` counts them.
 *
 *   char line[64];
 *   sb_strbuf sb;
 *   sb_strbuf_init(&sb, line, sizeof(line));
 *   sb_strbuf_appendf(&sb, "%s: %s\r\n", name, value);
 *   if (sb_strbuf_overflowed(&sb)) return SB_ENOMEM;
 *   write(fd, sb.buf, sb.len);
 */
#ifndef SB_STRBUF_H
#define SB_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct sb_strbuf {
  char *buf;    /* the caller's buffer, borrowed */
  size_t cap;   /* its size in bytes, the terminating NUL included */
  size_t len;   /* bytes appended so far, the NUL not counted; always < cap when cap > 0 */
  int overflow; /* an append did not fit (or failed to format); sticky */
} sb_strbuf;

#if defined(__GNUC__) || defined(__clang__)
#define SB_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define SB_PRINTF_LIKE(f, a)
#endif

/* Starts an empty text in buf[0 .. cap). cap == 0 is allowed: every append then overflows. */
void sb_strbuf_init(sb_strbuf *sb, char *buf, size_t cap);

/* Continues a text of `len` bytes already in buf (len < cap, not necessarily NUL-terminated:
 * buf[len] is set to NUL). A len that does not fit marks the buffer overflowed. */
void sb_strbuf_resume(sb_strbuf *sb, char *buf, size_t cap, size_t len);

/* Appends n bytes. Returns 0, or SB_ENOMEM when they do not fit whole or the buffer has
 * already overflowed; the text is then unchanged. */
int sb_strbuf_append(sb_strbuf *sb, const void *bytes, size_t n);

/* Appends a NUL-terminated string; as sb_strbuf_append. */
int sb_strbuf_appends(sb_strbuf *sb, const char *s);

/* Appends printf-formatted text, whole or not at all; as sb_strbuf_append. A formatting
 * error (vsnprintf < 0) counts as an overflow too. */
int sb_strbuf_appendf(sb_strbuf *sb, const char *fmt, ...) SB_PRINTF_LIKE(2, 3);
int sb_strbuf_vappendf(sb_strbuf *sb, const char *fmt, va_list ap) SB_PRINTF_LIKE(2, 0);

/* Whether any append since init did not fit. */
static inline int sb_strbuf_overflowed(const sb_strbuf *sb) { return sb->overflow; }

#endif
