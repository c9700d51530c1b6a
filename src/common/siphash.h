/*
 * siphash.h — SipHash, the keyed hash of Aumasson and Bernstein ("SipHash: a fast short-input
 * PRF", 2012), for hash tables whose keys a peer can choose.
 *
 * An unkeyed hash (FNV-1a, say) lets anyone who knows it compute, offline, keys that all fall
 * into the same bucket, and turn every lookup into a walk over all of them. With a secret key
 * per process the bucket of a key cannot be predicted, so such a flood costs the attacker as
 * much as it costs us. SipHash-c-d runs c compression rounds per 8-byte block and d
 * finalisation rounds: 2-4 is the variant of the paper; 1-3 (the maps' choice, as in the hash
 * tables of Python and Rust) is faster and still unpredictable without the key.
 */
#ifndef SB_COMMON_SIPHASH_H
#define SB_COMMON_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The 64-bit SipHash-1-3 / SipHash-2-4 of data[0..n) under the 16-byte key. */
uint64_t sb_siphash13(const uint8_t key[16], const void *data, size_t n);
uint64_t sb_siphash24(const uint8_t key[16], const void *data, size_t n);

#endif
