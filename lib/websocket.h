/* websocket.h — RFC 6455 framing without I/O: the opening handshake's
 * accept key, a frame parser and encoder, and a reassembler for fragmented
 * messages. Every buffer is the caller's; nothing here allocates, so the
 * same code serves the node agent's exec endpoint, tests and fuzzing.
 *
 * No extensions are negotiated, so the RSV bits must be zero. A frame whose
 * payload does not fit the caller's buffer is an error (the caller answers
 * with close code 1009), never a reason to allocate. */
#ifndef CAPSTAN_WEBSOCKET_H
#define CAPSTAN_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA

#define WS_NEED_MORE (-2)
#define WS_ERROR (-1)

/* The longest frame header: 2 bytes, 8 of extended length, 4 of mask. */
#define WS_MAX_HEADER 14
/* Control frames carry at most this much (RFC 6455 5.5). */
#define WS_MAX_CONTROL 125
/* base64 of a SHA-1 digest, NUL included. */
#define WS_ACCEPT_SIZE 29

#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_TOO_BIG 1009

struct ws_frame {
	bool fin;
	int opcode;
	bool masked;
	uint64_t len;           /* payload bytes, unmasked into the caller's out */
	uint16_t close_code;    /* for WS_OP_CLOSE with a payload, else 0 */
};

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key +
 * the RFC's GUID)). The key must be base64 of 16 bytes (24 characters), as
 * the RFC requires. Returns 0, or -1 for a bad key. */
int ws_accept_key(const char *client_key, char out[WS_ACCEPT_SIZE]);

/* Parses one frame at buf[0..len). from_client: frames from a client must
 * be masked, frames from a server must not be. The payload is unmasked into
 * out, which holds out_cap bytes: a longer payload is an error. Returns the
 * bytes the frame took (header and payload), WS_NEED_MORE when buf holds
 * only part of it, or WS_ERROR for a frame that breaks the protocol. */
long ws_parse_frame(const uint8_t *buf, size_t len, bool from_client, uint8_t *out,
		    size_t out_cap, struct ws_frame *f);

/* Writes a frame header into out (WS_MAX_HEADER bytes) and returns its
 * length. mask_key (4 bytes) or NULL for an unmasked (server) frame; the
 * caller masks the payload itself with ws_mask. */
size_t ws_frame_header(uint8_t *out, int opcode, bool fin, uint64_t len,
		       const uint8_t *mask_key);

/* XORs data with the 4-byte key; offset is the position of data[0] within
 * the payload, so a payload can be masked in pieces. */
void ws_mask(uint8_t *data, size_t n, const uint8_t key[4], uint64_t offset);

/* Reassembles data messages from frames. buf (cap bytes) is the caller's
 * and bounds the message size. */
struct ws_assembler {
	uint8_t *buf;
	size_t cap;
	size_t len;
	int opcode;             /* of the message being assembled */
	bool active;            /* a fragmented message is in progress */
};

void ws_assembler_init(struct ws_assembler *a, uint8_t *buf, size_t cap);
/* Adds a data frame (text, binary or continuation; control frames are the
 * caller's, and may come between fragments). Returns 1 when a whole message
 * is in a->buf (a->len bytes, a->opcode), 0 when more fragments are due, or
 * WS_ERROR: a continuation without a start, a new message inside a
 * fragmented one, or a message over cap. */
int ws_assemble(struct ws_assembler *a, const struct ws_frame *f, const uint8_t *payload);

/* The first of supported (NULL-terminated, in order of preference) that
 * offered (a Sec-WebSocket-Protocol value: comma-separated tokens) lists,
 * or NULL. */
const char *ws_pick_protocol(const char *offered, const char *const *supported);

#endif
