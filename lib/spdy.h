/* spdy.h — SPDY/3 framing without I/O (what kubectl's "SPDY/3.1" upgrade
 * speaks, through moby/spdystream): a frame parser and encoders, and the
 * zlib-compressed name/value header blocks with the protocol's fixed
 * dictionary.
 *
 * Parsing never allocates: a parsed frame points into the caller's buffer,
 * and decompressed header blocks go into a buffer of the caller's. The two
 * zlib contexts (one per direction, as the protocol keeps one compression
 * context per connection and direction) are the only state; the caller
 * owns them (spdy_zin_init/spdy_zout_init ... spdy_z*_free).
 *
 * Contract of the parsers (picohttpparser's): a byte count on success,
 * SPDY_NEED_MORE when the input ends inside the thing parsed, SPDY_ERROR for
 * input that breaks the protocol or exceeds the caller's limit. */
#ifndef CAPSTAN_SPDY_H
#define CAPSTAN_SPDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#define SPDY_NEED_MORE (-2)
#define SPDY_ERROR (-1)

#define SPDY_VERSION 3
#define SPDY_HEADER_SIZE 8
/* Frame lengths are 24 bits. */
#define SPDY_MAX_LENGTH 0xFFFFFFu

/* Control frame types. */
#define SPDY_SYN_STREAM 1
#define SPDY_SYN_REPLY 2
#define SPDY_RST_STREAM 3
#define SPDY_SETTINGS 4
#define SPDY_PING 6
#define SPDY_GOAWAY 7
#define SPDY_HEADERS 8
#define SPDY_WINDOW_UPDATE 9

/* Flags: FIN on data frames, SYN_STREAM, SYN_REPLY and HEADERS. */
#define SPDY_FLAG_FIN 0x01
#define SPDY_FLAG_UNIDIRECTIONAL 0x02

/* RST_STREAM status codes. */
#define SPDY_PROTOCOL_ERROR 1
#define SPDY_INVALID_STREAM 2
#define SPDY_REFUSED_STREAM 3
#define SPDY_CANCEL 5
#define SPDY_INTERNAL_ERROR 6
#define SPDY_FLOW_CONTROL_ERROR 7
#define SPDY_STREAM_IN_USE 8
#define SPDY_STREAM_ALREADY_CLOSED 9
#define SPDY_FRAME_TOO_LARGE 11

/* GOAWAY status codes. */
#define SPDY_GOAWAY_OK 0
#define SPDY_GOAWAY_PROTOCOL_ERROR 1

/* SETTINGS ids. */
#define SPDY_SETTINGS_INITIAL_WINDOW_SIZE 7

/* The window every stream starts with until SETTINGS say otherwise. */
#define SPDY_DEFAULT_WINDOW 65536

struct spdy_frame {
	bool control;
	uint16_t type;              /* control frames */
	uint8_t flags;
	uint32_t length;            /* of the payload */
	const uint8_t *payload;     /* into the parsed buffer */
	/* Decoded by type. stream_id: data frames, SYN_STREAM, SYN_REPLY,
	 * RST_STREAM, HEADERS, WINDOW_UPDATE (0 there is the whole session, as
	 * in SPDY/3.1); the last good stream for GOAWAY. */
	uint32_t stream_id;
	uint32_t assoc_id;          /* SYN_STREAM */
	uint8_t priority;           /* SYN_STREAM, 0 (highest) to 7 */
	uint32_t status;            /* RST_STREAM, GOAWAY */
	uint32_t ping_id;           /* PING */
	uint32_t delta;             /* WINDOW_UPDATE */
	uint32_t n_settings;        /* SETTINGS; read them with spdy_setting */
	const uint8_t *block;       /* SYN_STREAM, SYN_REPLY, HEADERS: the */
	size_t block_len;           /* compressed name/value block */
};

/* Parses one frame at buf[0..len). A payload longer than max_payload is an
 * error (the caller's memory bound, at most SPDY_MAX_LENGTH); so is a
 * control frame of another version than 3, a fixed-size control frame of
 * the wrong size, a stream id 0 where one is needed, or a SETTINGS count
 * that does not fit the frame. Unknown control types parse (with only the
 * common fields) so the caller can ignore them, as the protocol asks.
 * Returns the frame's size, SPDY_NEED_MORE or SPDY_ERROR. */
long spdy_parse_frame(const uint8_t *buf, size_t len, size_t max_payload,
		      struct spdy_frame *f);

/* Entry i (< f->n_settings) of a parsed SETTINGS frame. */
void spdy_setting(const struct spdy_frame *f, uint32_t i, uint8_t *flags, uint32_t *id,
		  uint32_t *value);

/* ---- encoders: each writes a whole frame into out and returns its size ---- */

/* The 8-byte header of a data frame carrying len bytes (the caller sends
 * the payload after it). */
size_t spdy_data_header(uint8_t out[SPDY_HEADER_SIZE], uint32_t stream_id, uint8_t flags,
			uint32_t len);
size_t spdy_rst_stream(uint8_t out[16], uint32_t stream_id, uint32_t status);
size_t spdy_ping(uint8_t out[12], uint32_t id);
size_t spdy_goaway(uint8_t out[16], uint32_t last_good, uint32_t status);
size_t spdy_window_update(uint8_t out[16], uint32_t stream_id, uint32_t delta);
/* SETTINGS with one entry (flags 0). */
size_t spdy_settings1(uint8_t out[20], uint32_t id, uint32_t value);

/* ---- name/value header blocks ---- */

/* Decompression context of one direction of a connection. */
struct spdy_zin {
	z_stream z;
	bool ready;
};
/* Compression context of one direction of a connection. */
struct spdy_zout {
	z_stream z;
	bool ready;
};

int spdy_zin_init(struct spdy_zin *zi);
void spdy_zin_free(struct spdy_zin *zi);
int spdy_zout_init(struct spdy_zout *zo);
void spdy_zout_free(struct spdy_zout *zo);

/* Decompresses one frame's block into out (cap bytes). The context goes
 * on from the previous block of the connection. Returns the plain size, or
 * SPDY_ERROR for corrupt input, a wrong dictionary, or a block that does not
 * fit cap (the context is then unusable: the connection must end). */
long spdy_block_inflate(struct spdy_zin *zi, const uint8_t *block, size_t len, uint8_t *out,
			size_t cap);

/* One name/value pair of a plain block. Values may hold several values
 * separated by NUL bytes, as the protocol allows. */
struct spdy_nv {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

struct spdy_nv_iter {
	const uint8_t *p;
	size_t left;
	uint32_t count;             /* pairs still to read */
};

/* Starts reading a plain block. Returns 0, or SPDY_ERROR when it is too
 * short for its count. */
int spdy_nv_begin(struct spdy_nv_iter *it, const uint8_t *plain, size_t len);
/* Returns 1 with *nv set, 0 after the last pair (when the block also ends
 * exactly there), or SPDY_ERROR: a length past the end, an empty name, or
 * bytes after the last pair. */
int spdy_nv_next(struct spdy_nv_iter *it, struct spdy_nv *nv);
/* The value of name (compared without regard to case) in a plain block:
 * 1 with *value set, 0 when absent, SPDY_ERROR when the block is malformed. */
int spdy_nv_find(const uint8_t *plain, size_t len, const char *name, struct spdy_nv *value);

/* Writes the plain block of pairs (name, value, name, value, ..., NULL)
 * into out. Returns its size, or SPDY_ERROR when it does not fit cap. */
long spdy_nv_encode(const char *const *pairs, uint8_t *out, size_t cap);

/* A SYN_STREAM or SYN_REPLY with the block of pairs compressed through zo
 * (whose context goes on to the connection's next block). Returns the
 * frame's size, or SPDY_ERROR when it does not fit cap or zlib fails. */
long spdy_syn_stream(struct spdy_zout *zo, uint32_t stream_id, uint32_t assoc_id,
		     uint8_t priority, uint8_t flags, const char *const *pairs, uint8_t *out,
		     size_t cap);
long spdy_syn_reply(struct spdy_zout *zo, uint32_t stream_id, uint8_t flags,
		    const char *const *pairs, uint8_t *out, size_t cap);

/* The protocol's compression dictionary (for tests). */
const uint8_t *spdy_dictionary(size_t *len);

#endif
