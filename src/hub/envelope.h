/*
 * envelope.h — the envelope and the control payloads of docs/PROTOCOL.md, on the schema codec.
 *
 * Everything on the wire is described by a schema, so the formats below are data: the hub
 * builds the schemas once, announces the envelope schema in HELLO, and encodes and decodes
 * with the generic codec.
 */
#ifndef SB_HUB_ENVELOPE_H
#define SB_HUB_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "switchboard.h"

#define SB_PROTOCOL_VERSION 1

/* Envelope field indices (the order of the default envelope schema). */
enum {
  SB_ENV_KIND, SB_ENV_METHOD, SB_ENV_STATUS, SB_ENV_ID, SB_ENV_STREAM,
  SB_ENV_OFFSET, SB_ENV_EPOCH, SB_ENV_URL, SB_ENV_BODY, SB_ENV_NFIELDS
};

typedef struct sb_schemas {
  sb_schema *envelope; /* kind u8, method u8, status u16, id u32, stream text, offset u64,
                          epoch u64, url text, body rest */
  sb_schema *hello;    /* kind u8, version u8, conn_id text, token text, heartbeat_ms u32,
                          max_message u32, max_replay u32, history_max u32, envelope bytes,
                          schemas rest */
  sb_schema *resume;   /* token text, positions rest */
  sb_schema *position; /* stream text, offset u64, epoch u64 (repeated in RESUME and ACK) */
  sb_schema *resumed;  /* stream text, recovered u8, offset u64, epoch u64 (repeated) */
  sb_schema *record;   /* what the hub stores in history: method u8, url text, body rest */
} sb_schemas;

int sb_schemas_init(sb_schemas *s, const sb_allocator *a);
void sb_schemas_free(sb_schemas *s);

/* The envelope's fields as codec values, in schema order. */
void sb_envelope_values(const sb_envelope *env, sb_value v[SB_ENV_NFIELDS]);

/* Encodes an envelope into a new prepared message (frame included). */
int sb_envelope_msg(const sb_schemas *s, sb_server *srv, const sb_envelope *env, sb_msg **out);

/* Decodes an envelope. SB_EPROTO with a message in err on malformed input. */
int sb_envelope_decode(const sb_schemas *s, const uint8_t *data, size_t len, sb_envelope *env,
                       char *err, size_t errlen);

#endif
