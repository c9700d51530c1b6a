#include <string.h>

#include "common/common.h"
#include "hub/envelope.h"
#include "net/net.h"

static int make(sb_schema **out, const sb_field *f, size_t n, const sb_allocator *a) {
  return sb_schema_new(out, f, n, a, NULL, 0);
}

int sb_schemas_init(sb_schemas *s, const sb_allocator *a) {
  static const sb_field envelope[] = {
      {"kind", SB_FIELD_U8, 0},     {"method", SB_FIELD_U8, 0}, {"status", SB_FIELD_U16, 0},
      {"id", SB_FIELD_U32, 0},      {"stream", SB_FIELD_TEXT, 0}, {"offset", SB_FIELD_U64, 0},
      {"epoch", SB_FIELD_U64, 0},   {"url", SB_FIELD_TEXT, 0},  {"body", SB_FIELD_REST, 0},
  };
  static const sb_field hello[] = {
      {"kind", SB_FIELD_U8, 0},           {"version", SB_FIELD_U8, 0},
      {"conn_id", SB_FIELD_TEXT, 0},      {"token", SB_FIELD_TEXT, 0},
      {"heartbeat_ms", SB_FIELD_U32, 0},  {"max_message", SB_FIELD_U32, 0},
      {"max_replay", SB_FIELD_U32, 0},    {"history_max", SB_FIELD_U32, 0},
      {"envelope", SB_FIELD_BYTES, 0},    {"schemas", SB_FIELD_REST, 0},
  };
  static const sb_field resume[] = {{"token", SB_FIELD_TEXT, 0}, {"positions", SB_FIELD_REST, 0}};
  static const sb_field position[] = {
      {"stream", SB_FIELD_TEXT, 0}, {"offset", SB_FIELD_U64, 0}, {"epoch", SB_FIELD_U64, 0}};
  static const sb_field resumed[] = {{"stream", SB_FIELD_TEXT, 0},
                                     {"recovered", SB_FIELD_U8, 0},
                                     {"offset", SB_FIELD_U64, 0},
                                     {"epoch", SB_FIELD_U64, 0}};
  static const sb_field record[] = {
      {"method", SB_FIELD_U8, 0}, {"url", SB_FIELD_TEXT, 0}, {"body", SB_FIELD_REST, 0}};
  memset(s, 0, sizeof(*s));
  if (make(&s->envelope, envelope, 9, a) || make(&s->hello, hello, 10, a) ||
      make(&s->resume, resume, 2, a) || make(&s->position, position, 3, a) ||
      make(&s->resumed, resumed, 4, a) || make(&s->record, record, 3, a)) {
    sb_schemas_free(s);
    return SB_ENOMEM;
  }
  return 0;
}

void sb_schemas_free(sb_schemas *s) {
  sb_schema_free(s->envelope);
  sb_schema_free(s->hello);
  sb_schema_free(s->resume);
  sb_schema_free(s->position);
  sb_schema_free(s->resumed);
  sb_schema_free(s->record);
  memset(s, 0, sizeof(*s));
}

void sb_envelope_values(const sb_envelope *env, sb_value v[SB_ENV_NFIELDS]) {
  memset(v, 0, SB_ENV_NFIELDS * sizeof(*v));
  v[SB_ENV_KIND].u = env->kind;
  v[SB_ENV_METHOD].u = env->method;
  v[SB_ENV_STATUS].u = env->status;
  v[SB_ENV_ID].u = env->id;
  v[SB_ENV_STREAM].data = env->stream;
  v[SB_ENV_STREAM].len = env->stream_len;
  v[SB_ENV_OFFSET].u = env->offset;
  v[SB_ENV_EPOCH].u = env->epoch;
  v[SB_ENV_URL].data = env->url;
  v[SB_ENV_URL].len = env->url_len;
  v[SB_ENV_BODY].data = env->body;
  v[SB_ENV_BODY].len = env->body_len;
}

int sb_envelope_msg(const sb_schemas *s, sb_server *srv, const sb_envelope *env, sb_msg **out) {
  sb_value v[SB_ENV_NFIELDS];
  sb_envelope_values(env, v);
  size_t size, n;
  int r = sb_schema_encoded_size(s->envelope, v, &size, NULL, 0);
  if (r) return r;
  /* Encode straight into the frame: one allocation, no copy. */
  sb_msg *m;
  r = sb_msg_alloc(&m, srv, SB_BINARY, size);
  if (r) return r;
  r = sb_schema_encode(s->envelope, v, m->data + m->hdr_len, size, &n, NULL, 0);
  if (r) {
    sb_msg_unref(m);
    return r;
  }
  *out = m;
  return 0;
}

int sb_envelope_decode(const sb_schemas *s, const uint8_t *data, size_t len, sb_envelope *env,
                       char *err, size_t errlen) {
  sb_value v[SB_ENV_NFIELDS];
  int r = sb_schema_decode(s->envelope, data, len, v, err, errlen);
  if (r) return r;
  env->kind = (uint8_t)v[SB_ENV_KIND].u;
  env->method = (uint8_t)v[SB_ENV_METHOD].u;
  env->status = (uint16_t)v[SB_ENV_STATUS].u;
  env->id = (uint32_t)v[SB_ENV_ID].u;
  env->stream = v[SB_ENV_STREAM].data;
  env->stream_len = v[SB_ENV_STREAM].len;
  env->offset = v[SB_ENV_OFFSET].u;
  env->epoch = v[SB_ENV_EPOCH].u;
  env->url = v[SB_ENV_URL].data;
  env->url_len = v[SB_ENV_URL].len;
  env->body = v[SB_ENV_BODY].data;
  env->body_len = v[SB_ENV_BODY].len;
  return 0;
}
