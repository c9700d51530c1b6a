/*
 * frame.h — the RFC 6455 frame parser and writer. No I/O: bytes in, events out.
 *
 * The parser is incremental: it may be fed any split of the byte stream, one byte at a time
 * or megabytes at once, and produces the same events. It keeps at most 14 header bytes of its
 * own; payload is unmasked in place in the caller's buffer and handed out as chunks that point
 * into that buffer, so a frame that arrived whole is never copied.
 *
 * It enforces every rule of §5 that can be checked at frame level: the mask bit (§5.1), RSV
 * bits without a negotiated extension (§5.2), unknown opcodes (§5.2), control frames that are
 * fragmented or longer than 125 bytes (§5.5), continuation frames without a message to continue
 * and data frames inside a fragmented message (§5.4), 64-bit lengths with the top bit set
 * (§5.2), and the message-size limit, checked against the header's length *before* any payload
 * is buffered. It does not check UTF-8 or close payloads; those belong to the message layer.
 */
#ifndef SB_WS_FRAME_H
#define SB_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
  SB_OP_CONT = 0x0,
  SB_OP_TEXT = 0x1,
  SB_OP_BINARY = 0x2,
  SB_OP_CLOSE = 0x8,
  SB_OP_PING = 0x9,
  SB_OP_PONG = 0xA
};

#define SB_FRAME_MAX_HEADER 14 /* 2 + 8 (length) + 4 (mask) */
#define SB_CONTROL_MAX_PAYLOAD 125

typedef enum {
  SB_FRAME_NEED_MORE = 0, /* all input consumed; feed more */
  SB_FRAME_CHUNK = 1,     /* ev->data/len hold (part of) a frame's payload, unmasked */
  SB_FRAME_ERROR = 2      /* protocol violation; ev->close_code and ev->error say which */
} sb_frame_status;

typedef struct sb_frame_event {
  uint8_t opcode;      /* the frame's opcode (SB_OP_CONT for continuations) */
  uint8_t fin;         /* the frame's FIN bit */
  uint8_t first;       /* this chunk is the first of its frame */
  uint8_t last;        /* this chunk ends its frame (a zero-length frame is one chunk) */
  uint64_t frame_len;  /* the frame's whole payload length */
  uint8_t *data;       /* points into the caller's buffer; unmasked */
  size_t len;
  uint16_t close_code; /* on SB_FRAME_ERROR: 1002 or 1009 */
  const char *error;   /* on SB_FRAME_ERROR: static text */
} sb_frame_event;

typedef struct sb_frame_parser {
  uint64_t max_message; /* limit for one message, all fragments together */
  uint64_t msg_len;     /* bytes of the current (possibly fragmented) data message so far */
  uint64_t remaining;   /* payload bytes still to come in the current frame */
  uint64_t frame_len;
  uint8_t hdr[SB_FRAME_MAX_HEADER];
  uint8_t hdr_len;      /* header bytes collected so far */
  uint8_t mask[4];
  uint8_t mask_off;     /* position in the mask for the next payload byte */
  uint8_t in_payload;   /* 0: reading a header, 1: reading payload */
  uint8_t opcode;
  uint8_t fin;
  uint8_t first;        /* next chunk is the first of its frame */
  uint8_t fragmented;   /* a data message was started with FIN=0 and is not finished */
  uint8_t expect_masked;/* 1 on the server side (client frames must be masked) */
  uint8_t failed;       /* sticky: after an error the parser refuses everything */
  uint16_t fail_code;   /* the close code of that error */
  const char *fail_error;
} sb_frame_parser;

/* Initialises a parser. `expect_masked` is 1 for a server (it parses client frames). */
void sb_frame_parser_init(sb_frame_parser *p, uint64_t max_message, int expect_masked);

/*
 * Consumes bytes from buf[0..len) and returns how many it consumed; *st tells what happened:
 *   SB_FRAME_CHUNK      ev describes a payload chunk (possibly empty for a zero-length frame);
 *                       call again with the rest of the buffer.
 *   SB_FRAME_NEED_MORE  everything was consumed (returns len) and no event is pending.
 *   SB_FRAME_ERROR      the stream is invalid; the parser stays failed.
 * The payload bytes in `buf` are unmasked in place.
 */
size_t sb_frame_parse(sb_frame_parser *p, uint8_t *buf, size_t len, sb_frame_event *ev,
                      sb_frame_status *st);

/*
 * Writes a frame header for an unmasked (server-to-client) frame with FIN=`fin` into `out`
 * (at least 10 bytes) and returns its length. With a non-NULL `mask` the header is a masked
 * (client) header of up to 14 bytes carrying that key; the caller masks the payload.
 */
size_t sb_frame_header(uint8_t *out, unsigned opcode, int fin, uint64_t len,
                       const uint8_t mask[4]);

/* Applies a WebSocket mask to buf[0..len), starting at mask position `off` (0..3). Returns the
 * mask position after the last byte. */
unsigned sb_frame_mask(uint8_t *buf, size_t len, const uint8_t mask[4], unsigned off);

/* 1 if `code` may appear in a close frame on the wire (§7.4), else 0. */
int sb_close_code_valid(unsigned code);

#endif
