/*
 * hub.h — what the rest layer needs from the hub, beyond the public API: it takes over the
 * REQUEST and SEND envelopes and learns when a connection closes (to orphan its pending
 * requests). Internal.
 */
#ifndef SB_HUB_HUB_H
#define SB_HUB_HUB_H

#include "switchboard.h"

typedef void (*sb_hub_app_message_fn)(void *app, sb_conn *c, const sb_envelope *env);
typedef void (*sb_hub_app_close_fn)(void *app, sb_conn *c);

/* Installs (or, with app NULL, removes) the application layer. While installed, REQUEST and
 * SEND go to on_message instead of the hub options' on_message. */
void sb_hub_set_app(sb_hub *h, void *app, sb_hub_app_message_fn on_message,
                    sb_hub_app_close_fn on_close);

/* The allocator of the hub's server. */
const sb_allocator *sb_hub_allocator(const sb_hub *h);

#endif
