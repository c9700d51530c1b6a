#include "switchboard.h"

const char *sb_strerror(int code) {
  switch (code) {
    case SB_OK: return "success";
    case SB_EINVAL: return "invalid argument";
    case SB_ENOMEM: return "out of memory";
    case SB_ECLOSED: return "connection is closing or closed";
    case SB_EBUSY: return "object is still in use";
    case SB_ESTATE: return "call not valid in the current state";
    case SB_EIO: return "operating-system error";
    case SB_EADDRINUSE: return "address already in use";
    case SB_EPROTO: return "malformed input";
    case SB_ENOTFOUND: return "not found";
    default: return "unknown error";
  }
}
