/*
 * test_protocol.c — the hex examples of docs/PROTOCOL.md against the C implementation.
 *
 * Every block fenced as ```hex NAME in the document is read from the file and compared byte
 * for byte with what the library encodes for the message the document describes. A change of
 * the wire format therefore fails here until the document says the same.
 *
 * spec/protocol.json holds the tables the JavaScript client shares with the C side (kinds,
 * methods, close codes, the fixed schemas); the C enums and schemas are checked against it
 * here, both ways, and client/test/protocol.test.mjs checks the client's copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hub/envelope.h"
#include "json.h"
#include "net/net.h"

#define DOC SB_SOURCE_DIR "/docs/PROTOCOL.md"
#define SPEC SB_SOURCE_DIR "/spec/protocol.json"

static char *doc;

/* The bytes of the block ```hex NAME, or fails the test. */
static size_t doc_example(const char *name, uint8_t *out, size_t cap) {
  char tag[96];
  snprintf(tag, sizeof(tag), "```hex %s\n", name);
  const char *p = strstr(doc, tag);
  if (!p) fail_msg("docs/PROTOCOL.md has no example '%s'", name);
  p += strlen(tag);
  const char *end = strstr(p, "```");
  assert_non_null(end);
  size_t n = 0;
  while (p < end) {
    unsigned v;
    int used;
    if (sscanf(p, "%2x%n", &v, &used) == 1 && used == 2) {
      assert_true(n < cap);
      out[n++] = (uint8_t)v;
      p += 2;
    } else {
      p++;
    }
  }
  return n;
}

static void check_bytes(const char *name, const uint8_t *got, size_t glen) {
  uint8_t want[2048];
  size_t wlen = doc_example(name, want, sizeof(want));
  if (wlen != glen || memcmp(want, got, glen) != 0) {
    fprintf(stderr, "example '%s': document has %zu bytes, the code encodes %zu:\n", name, wlen,
            glen);
    for (size_t i = 0; i < glen; i++) fprintf(stderr, "%02x ", got[i]);
    fprintf(stderr, "\n");
    fail_msg("example '%s' differs from the implementation", name);
  }
}

static sb_schemas sch;

static void encode_env(const char *name, const sb_envelope *env) {
  sb_value v[SB_ENV_NFIELDS];
  sb_envelope_values(env, v);
  uint8_t buf[1024];
  size_t n;
  assert_int_equal(sb_schema_encode(sch.envelope, v, buf, sizeof(buf), &n, NULL, 0), 0);
  check_bytes(name, buf, n);
  /* and it decodes back */
  sb_envelope back;
  assert_int_equal(sb_envelope_decode(&sch, buf, n, &back, NULL, 0), 0);
  assert_int_equal(back.kind, env->kind);
  assert_int_equal(back.offset, env->offset);
  assert_int_equal(back.body_len, env->body_len);
}

#define S(x) x, sizeof(x) - 1
static const uint64_t EPOCH = 0x0123456789abcdefull;
static const char ID[] = "AAAAAAAAAAAAAAAAAAAAAA", TOKEN[] = "BBBBBBBBBBBBBBBBBBBBBB";

static void test_user_schema(void **state) {
  (void)state;
  const sb_field f[] = {{"status", SB_FIELD_U8, 0}, {"method", SB_FIELD_U8, 0},
                        {"body", SB_FIELD_REST, 0}};
  sb_schema *s;
  assert_int_equal(sb_schema_new(&s, f, 3, NULL, NULL, 0), 0);
  sb_value v[3] = {{200, NULL, 0}, {1, NULL, 0}, {0, "hi", 2}};
  uint8_t buf[16];
  size_t n;
  assert_int_equal(sb_schema_encode(s, v, buf, sizeof(buf), &n, NULL, 0), 0);
  check_bytes("user-schema", buf, n);
  sb_schema_free(s);
}

static void test_envelope_schema(void **state) {
  (void)state;
  uint8_t buf[256];
  size_t n;
  assert_int_equal(sb_schema_serialize(sch.envelope, buf, sizeof(buf), &n), 0);
  check_bytes("envelope-schema", buf, n);
}

static void test_envelopes(void **state) {
  (void)state;
  sb_envelope push = {SB_KIND_PUSH, SB_METHOD_POST, 0, 0, S("g:room1"), 7, EPOCH,
                      S("/rooms/1/messages"), "hello", 5};
  encode_env("push", &push);
  sb_envelope req = {SB_KIND_REQUEST, SB_METHOD_GET, 0, 42, "", 0, 0, 0, S("/rooms/1"), "", 0};
  encode_env("request", &req);
  sb_envelope res = {SB_KIND_RESPONSE, 0, 200, 42, "", 0, 0, 0, "", 0, S("{\"ok\":true}")};
  encode_env("response", &res);
  sb_envelope err = {SB_KIND_ERROR, 0, 400, 0, "", 0, 0, 0, "", 0, S("bad")};
  encode_env("error", &err);
  sb_envelope ask = {SB_KIND_AUTH, 0, 401, 0, "", 0, 0, 0, "", 0, S("{\"expires\":1800000000}")};
  encode_env("auth-ask", &ask);
  sb_envelope tok = {SB_KIND_AUTH, 0, 0, 0, "", 0, 0, 0, "", 0, S("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")};
  encode_env("auth-token", &tok);
  sb_envelope ok = {SB_KIND_AUTH, 0, 200, 0, "", 0, 0, 0, "", 0, S("{\"expires\":1800003600}")};
  encode_env("auth-ok", &ok);
  sb_envelope ping = {SB_KIND_PING, 0, 0, 7, "", 0, 0, 0, "", 0, "", 0};
  encode_env("ping", &ping);
  sb_envelope pong = {SB_KIND_PING, 0, 200, 7, "", 0, 0, 0, "", 0, "", 0};
  encode_env("pong", &pong);
}

static size_t put_position(uint8_t *out, const char *stream, uint64_t off, uint64_t epoch) {
  sb_value v[3] = {{0, stream, strlen(stream)}, {off, NULL, 0}, {epoch, NULL, 0}};
  size_t n;
  assert_int_equal(sb_schema_encode(sch.position, v, out, 256, &n, NULL, 0), 0);
  return n;
}

static void test_control(void **state) {
  (void)state;
  uint8_t body[512];
  size_t n = 0;
  /* RESUME: token, then positions */
  sb_value tv[2] = {{0, TOKEN, 22}, {0, "", 0}};
  assert_int_equal(sb_schema_encode(sch.resume, tv, body, sizeof(body), &n, NULL, 0), 0);
  n += put_position(body + n, "g:room1", 7, EPOCH);
  n += put_position(body + n, "c:AAAAAAAAAAAAAAAAAAAAAA", 0, 0);
  sb_envelope resume = {SB_KIND_RESUME, 0, 0, 0, "", 0, 0, 0, "", 0, body, n};
  encode_env("resume", &resume);

  sb_value rv[4] = {{0, "g:room1", 7}, {1, NULL, 0}, {9, NULL, 0}, {EPOCH, NULL, 0}};
  assert_int_equal(sb_schema_encode(sch.resumed, rv, body, sizeof(body), &n, NULL, 0), 0);
  sb_envelope resumed = {SB_KIND_RESUMED, 0, 0, 0, "", 0, 0, 0, "", 0, body, n};
  encode_env("resumed", &resumed);

  n = put_position(body, "c:AAAAAAAAAAAAAAAAAAAAAA", 3, EPOCH);
  sb_envelope ack = {SB_KIND_ACK, 0, 0, 0, "", 0, 0, 0, "", 0, body, n};
  encode_env("ack", &ack);
}

static void test_hello(void **state) {
  (void)state;
  uint8_t es[256], out[512];
  size_t elen, n;
  assert_int_equal(sb_schema_serialize(sch.envelope, es, sizeof(es), &elen), 0);
  sb_value v[10] = {{SB_KIND_HELLO, NULL, 0}, {1, NULL, 0},     {0, ID, 22},
                    {0, TOKEN, 22},           {60000, NULL, 0}, {16777216, NULL, 0},
                    {10000, NULL, 0},         {1000, NULL, 0},  {0, es, elen},
                    {0, "", 0}};
  assert_int_equal(sb_schema_encode(sch.hello, v, out, sizeof(out), &n, NULL, 0), 0);
  check_bytes("hello", out, n);
}

/* ---- spec/protocol.json ---------------------------------------------------------------- */

typedef struct {
  const char *name;
  long value;
} named;

#define K(n) {#n, SB_KIND_##n}
static const named kinds[] = {K(REQUEST), K(RESPONSE), K(PUSH), K(SEND),  K(HELLO), K(RESUME),
                              K(RESUMED), K(ACK),      K(ERROR), K(AUTH), K(PING)};
#undef K
#define M(n) {#n, SB_METHOD_##n}
static const named methods[] = {M(NONE), M(GET), M(POST), M(PUT), M(PATCH), M(DELETE)};
#undef M
#define C(n) {#n, SB_CLOSE_##n}
static const named closes[] = {C(NORMAL),       C(GOING_AWAY), C(PROTOCOL_ERROR), C(UNSUPPORTED),
                               C(NO_STATUS),    C(ABNORMAL),   C(INVALID_DATA),   C(POLICY),
                               C(TOO_BIG),      C(INTERNAL),   C(TRY_AGAIN),      C(REPLACED),
                               C(EXPIRED),      C(IDENTITY)};
#undef C

static json *spec;

/* The table `key` of the spec equals the C one: the same names with the same values, and no
 * name on either side that the other lacks. */
static void check_table(const char *key, const named *c, size_t n) {
  const json *t = json_get(spec, key);
  if (!t || t->type != JSON_OBJECT) fail_msg("spec/protocol.json: no object \"%s\"", key);
  for (size_t i = 0; i < n; i++) {
    const json *v = json_get(t, c[i].name);
    if (!v)
      fail_msg("%s: the C side has %s = %ld, spec/protocol.json does not", key, c[i].name,
               c[i].value);
    if (v->type != JSON_NUMBER || (long)v->number != c[i].value)
      fail_msg("%s.%s: spec/protocol.json says %s, C says %ld", key, c[i].name,
               v->text ? v->text : "?", c[i].value);
  }
  if (t->count != n)
    fail_msg("%s: spec/protocol.json has %zu entries, C has %zu", key, t->count, n);
}

static void test_spec_tables(void **state) {
  (void)state;
  check_table("kinds", kinds, sizeof(kinds) / sizeof(kinds[0]));
  check_table("methods", methods, sizeof(methods) / sizeof(methods[0]));
  check_table("closeCodes", closes, sizeof(closes) / sizeof(closes[0]));
  const json *v = json_get(spec, "version");
  assert_non_null(v);
  assert_int_equal((long)v->number, SB_PROTOCOL_VERSION);
}

/* A schema of the spec equals the library's: built from the JSON, both serialize (§2.1) to
 * the same bytes, which covers names, types, sizes and order. */
static void check_schema(const char *key, const sb_schema *mine) {
  static const char *const types[] = {"",      "u8",    "u16",  "u32", "u64",
                                      "fixed", "bytes", "text", "rest"};
  const json *arr = json_get(json_get(spec, "schemas"), key);
  if (!arr || arr->type != JSON_ARRAY) fail_msg("spec/protocol.json: no schema \"%s\"", key);
  sb_field f[16];
  assert_true(arr->count <= 16);
  for (size_t i = 0; i < arr->count; i++) {
    const char *name = json_get_str(arr->items[i], "name");
    const char *type = json_get_str(arr->items[i], "type");
    if (!name || !type) fail_msg("schemas.%s[%zu]: needs a name and a type", key, i);
    f[i].name = name;
    f[i].size = 0;
    f[i].type = 0;
    for (int t = 1; t <= 8; t++)
      if (strcmp(type, types[t]) == 0) f[i].type = (sb_field_type)t;
    if (!f[i].type) fail_msg("schemas.%s[%zu]: unknown type %s", key, i, type);
  }
  sb_schema *s;
  char err[128];
  if (sb_schema_new(&s, f, arr->count, NULL, err, sizeof(err)) != 0)
    fail_msg("schemas.%s: %s", key, err);
  uint8_t a[512], b[512];
  size_t na, nb;
  assert_int_equal(sb_schema_serialize(s, a, sizeof(a), &na), 0);
  assert_int_equal(sb_schema_serialize(mine, b, sizeof(b), &nb), 0);
  sb_schema_free(s);
  if (na != nb || memcmp(a, b, na) != 0)
    fail_msg("schemas.%s in spec/protocol.json differs from the library's", key);
}

static void test_spec_schemas(void **state) {
  (void)state;
  check_schema("envelope", sch.envelope);
  check_schema("hello", sch.hello);
  check_schema("resume", sch.resume);
  check_schema("position", sch.position);
  check_schema("resumed", sch.resumed);
  /* and nothing else: a schema added to the spec must be checked here too */
  assert_int_equal(json_get(spec, "schemas")->count, 5);
}

static int setup(void **state) {
  (void)state;
  FILE *f = fopen(DOC, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  doc = malloc((size_t)len + 1);
  if (!doc || fread(doc, 1, (size_t)len, f) != (size_t)len) return -1;
  doc[len] = '\0';
  fclose(f);
  char err[256];
  spec = json_read_file(SPEC, err, sizeof(err));
  if (!spec) {
    fprintf(stderr, "%s: %s\n", SPEC, err);
    return -1;
  }
  return sb_schemas_init(&sch, &sb_default_allocator);
}

static int teardown(void **state) {
  (void)state;
  sb_schemas_free(&sch);
  json_free(spec);
  free(doc);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_user_schema), cmocka_unit_test(test_envelope_schema),
      cmocka_unit_test(test_envelopes),   cmocka_unit_test(test_control),
      cmocka_unit_test(test_hello),       cmocka_unit_test(test_spec_tables),
      cmocka_unit_test(test_spec_schemas),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
