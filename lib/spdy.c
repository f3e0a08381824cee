/* spdy.c — SPDY/3 frames and name/value header blocks (see spdy.h).
 *
 * Frame layout (SPDY/3 section 2.2): a control frame starts with the
 * control bit, a 15-bit version and a 16-bit type; a data frame with a
 * clear bit and a 31-bit stream id. Both go on with 8 bits of flags and a
 * 24-bit payload length. Every number is big-endian. */
#include <string.h>
#include <strings.h>

#include "lib/spdy.h"

/* The dictionary both ends load into zlib before the first header block
 * (SPDY/3 section 2.6.10.1): the common header names and method, status
 * and version words, each behind its 32-bit length, then a run of plain
 * text with status codes, dates and media types. */
static const char dictionary[] =
	"\0\0\0\7" "options" "\0\0\0\4" "head" "\0\0\0\4" "post" "\0\0\0\3" "put"
	"\0\0\0\6" "delete" "\0\0\0\5" "trace" "\0\0\0\6" "accept"
	"\0\0\0\x0e" "accept-charset" "\0\0\0\x0f" "accept-encoding"
	"\0\0\0\x0f" "accept-language" "\0\0\0\x0d" "accept-ranges" "\0\0\0\3" "age"
	"\0\0\0\5" "allow" "\0\0\0\x0d" "authorization" "\0\0\0\x0d" "cache-control"
	"\0\0\0\x0a" "connection" "\0\0\0\x0c" "content-base" "\0\0\0\x10" "content-encoding"
	"\0\0\0\x10" "content-language" "\0\0\0\x0e" "content-length"
	"\0\0\0\x10" "content-location" "\0\0\0\x0b" "content-md5"
	"\0\0\0\x0d" "content-range" "\0\0\0\x0c" "content-type" "\0\0\0\4" "date"
	"\0\0\0\4" "etag" "\0\0\0\6" "expect" "\0\0\0\7" "expires" "\0\0\0\4" "from"
	"\0\0\0\4" "host" "\0\0\0\x08" "if-match" "\0\0\0\x11" "if-modified-since"
	"\0\0\0\x0d" "if-none-match" "\0\0\0\x08" "if-range" "\0\0\0\x13" "if-unmodified-since"
	"\0\0\0\x0d" "last-modified" "\0\0\0\x08" "location" "\0\0\0\x0c" "max-forwards"
	"\0\0\0\6" "pragma" "\0\0\0\x12" "proxy-authenticate" "\0\0\0\x13" "proxy-authorization"
	"\0\0\0\5" "range" "\0\0\0\7" "referer" "\0\0\0\x0b" "retry-after" "\0\0\0\6" "server"
	"\0\0\0\2" "te" "\0\0\0\7" "trailer" "\0\0\0\x11" "transfer-encoding"
	"\0\0\0\7" "upgrade" "\0\0\0\x0a" "user-agent" "\0\0\0\4" "vary" "\0\0\0\3" "via"
	"\0\0\0\7" "warning" "\0\0\0\x10" "www-authenticate" "\0\0\0\6" "method"
	"\0\0\0\3" "get" "\0\0\0\6" "status" "\0\0\0\6" "200 OK" "\0\0\0\7" "version"
	"\0\0\0\x08" "HTTP/1.1" "\0\0\0\3" "url" "\0\0\0\6" "public" "\0\0\0\x0a" "set-cookie"
	"\0\0\0\x0a" "keep-alive" "\0\0\0\6" "origin"
	"100101201202205206300302303304305306307402405406407408409410411412413414415416417"
	"502504505"
	"203 Non-Authoritative Information" "204 No Content" "301 Moved Permanently"
	"400 Bad Request" "401 Unauthorized" "403 Forbidden" "404 Not Found"
	"500 Internal Server Error" "501 Not Implemented" "503 Service Unavailable"
	"Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec"
	" 00:00:00" " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
	"chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
	"application/xhtml+xml,text/plain,text/javascript,public"
	"privatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

const uint8_t *spdy_dictionary(size_t *len)
{
	*len = sizeof dictionary - 1;    /* not the literal's own NUL */
	return (const uint8_t *)dictionary;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- frames ---- */

/* Checks and decodes the fields of a known control frame. */
static int parse_control(struct spdy_frame *f)
{
	const uint8_t *p = f->payload;

	switch (f->type) {
	case SPDY_SYN_STREAM:
		if (f->length < 10)
			return SPDY_ERROR;
		f->stream_id = get32(p) & 0x7FFFFFFFu;
		f->assoc_id = get32(p + 4) & 0x7FFFFFFFu;
		f->priority = p[8] >> 5;
		f->block = p + 10;
		f->block_len = f->length - 10;
		return f->stream_id != 0 ? 0 : SPDY_ERROR;
	case SPDY_SYN_REPLY:
	case SPDY_HEADERS:
		if (f->length < 4)
			return SPDY_ERROR;
		f->stream_id = get32(p) & 0x7FFFFFFFu;
		f->block = p + 4;
		f->block_len = f->length - 4;
		return f->stream_id != 0 ? 0 : SPDY_ERROR;
	case SPDY_RST_STREAM:
		if (f->length != 8)
			return SPDY_ERROR;
		f->stream_id = get32(p) & 0x7FFFFFFFu;
		f->status = get32(p + 4);
		return f->stream_id != 0 && f->status != 0 ? 0 : SPDY_ERROR;
	case SPDY_SETTINGS:
		if (f->length < 4)
			return SPDY_ERROR;
		f->n_settings = get32(p);
		/* Eight bytes an entry, and nothing after the last. */
		return (f->length - 4) / 8 == f->n_settings && (f->length - 4) % 8 == 0 ?
		       0 : SPDY_ERROR;
	case SPDY_PING:
		if (f->length != 4)
			return SPDY_ERROR;
		f->ping_id = get32(p);
		return 0;
	case SPDY_GOAWAY:
		if (f->length != 8)
			return SPDY_ERROR;
		f->stream_id = get32(p) & 0x7FFFFFFFu;
		f->status = get32(p + 4);
		return 0;
	case SPDY_WINDOW_UPDATE:
		if (f->length != 8)
			return SPDY_ERROR;
		f->stream_id = get32(p) & 0x7FFFFFFFu;
		f->delta = get32(p + 4) & 0x7FFFFFFFu;
		return f->delta != 0 ? 0 : SPDY_ERROR;
	default:
		return 0;
	}
}

long spdy_parse_frame(const uint8_t *buf, size_t len, size_t max_payload,
		      struct spdy_frame *f)
{
	uint32_t w0, length;

	memset(f, 0, sizeof *f);
	if (len < SPDY_HEADER_SIZE)
		return SPDY_NEED_MORE;
	w0 = get32(buf);
	length = get32(buf + 4) & SPDY_MAX_LENGTH;
	f->flags = buf[4];
	f->length = length;
	if (length > max_payload)
		return SPDY_ERROR;
	f->control = (w0 & 0x80000000u) != 0;
	if (f->control) {
		if (((w0 >> 16) & 0x7FFFu) != SPDY_VERSION)
			return SPDY_ERROR;
		f->type = (uint16_t)(w0 & 0xFFFFu);
	} else {
		f->stream_id = w0 & 0x7FFFFFFFu;
		if (f->stream_id == 0)
			return SPDY_ERROR;
	}
	if (len - SPDY_HEADER_SIZE < length)
		return SPDY_NEED_MORE;
	f->payload = buf + SPDY_HEADER_SIZE;
	if (f->control && parse_control(f) != 0)
		return SPDY_ERROR;
	return (long)(SPDY_HEADER_SIZE + length);
}

void spdy_setting(const struct spdy_frame *f, uint32_t i, uint8_t *flags, uint32_t *id,
		  uint32_t *value)
{
	const uint8_t *e = f->payload + 4 + 8 * (size_t)i;

	*flags = e[0];
	*id = get32(e) & 0xFFFFFFu;
	*value = get32(e + 4);
}

static size_t control_header(uint8_t *out, uint16_t type, uint8_t flags, uint32_t len)
{
	put32(out, 0x80000000u | (uint32_t)SPDY_VERSION << 16 | type);
	put32(out + 4, (uint32_t)flags << 24 | (len & SPDY_MAX_LENGTH));
	return SPDY_HEADER_SIZE;
}

size_t spdy_data_header(uint8_t out[SPDY_HEADER_SIZE], uint32_t stream_id, uint8_t flags,
			uint32_t len)
{
	put32(out, stream_id & 0x7FFFFFFFu);
	put32(out + 4, (uint32_t)flags << 24 | (len & SPDY_MAX_LENGTH));
	return SPDY_HEADER_SIZE;
}

static size_t two_words(uint8_t *out, uint16_t type, uint32_t a, uint32_t b)
{
	control_header(out, type, 0, 8);
	put32(out + 8, a);
	put32(out + 12, b);
	return 16;
}

size_t spdy_rst_stream(uint8_t out[16], uint32_t stream_id, uint32_t status)
{
	return two_words(out, SPDY_RST_STREAM, stream_id & 0x7FFFFFFFu, status);
}

size_t spdy_goaway(uint8_t out[16], uint32_t last_good, uint32_t status)
{
	return two_words(out, SPDY_GOAWAY, last_good & 0x7FFFFFFFu, status);
}

size_t spdy_window_update(uint8_t out[16], uint32_t stream_id, uint32_t delta)
{
	return two_words(out, SPDY_WINDOW_UPDATE, stream_id & 0x7FFFFFFFu, delta & 0x7FFFFFFFu);
}

size_t spdy_ping(uint8_t out[12], uint32_t id)
{
	control_header(out, SPDY_PING, 0, 4);
	put32(out + 8, id);
	return 12;
}

size_t spdy_settings1(uint8_t out[20], uint32_t id, uint32_t value)
{
	control_header(out, SPDY_SETTINGS, 0, 12);
	put32(out + 8, 1);
	put32(out + 12, id & 0xFFFFFFu);
	put32(out + 16, value);
	return 20;
}

/* ---- header blocks ---- */

int spdy_zin_init(struct spdy_zin *zi)
{
	memset(zi, 0, sizeof *zi);
	if (inflateInit(&zi->z) != Z_OK)
		return SPDY_ERROR;
	zi->ready = true;
	return 0;
}

void spdy_zin_free(struct spdy_zin *zi)
{
	if (zi->ready)
		inflateEnd(&zi->z);
	zi->ready = false;
}

int spdy_zout_init(struct spdy_zout *zo)
{
	memset(zo, 0, sizeof *zo);
	/* Level 9 as spdystream's writer uses; header blocks are small. */
	if (deflateInit(&zo->z, Z_BEST_COMPRESSION) != Z_OK)
		return SPDY_ERROR;
	if (deflateSetDictionary(&zo->z, (const Bytef *)dictionary, sizeof dictionary - 1) !=
	    Z_OK) {
		deflateEnd(&zo->z);
		return SPDY_ERROR;
	}
	zo->ready = true;
	return 0;
}

void spdy_zout_free(struct spdy_zout *zo)
{
	if (zo->ready)
		deflateEnd(&zo->z);
	zo->ready = false;
}

long spdy_block_inflate(struct spdy_zin *zi, const uint8_t *block, size_t len, uint8_t *out,
			size_t cap)
{
	z_stream *z = &zi->z;
	int rv;

	if (!zi->ready)
		return SPDY_ERROR;
	z->next_in = (Bytef *)block;
	z->avail_in = (uInt)len;
	z->next_out = out;
	z->avail_out = (uInt)cap;
	for (;;) {
		rv = inflate(z, Z_SYNC_FLUSH);
		if (rv == Z_NEED_DICT) {
			/* The first block names the dictionary by its Adler-32;
			 * zlib refuses any other. */
			if (inflateSetDictionary(z, (const Bytef *)dictionary,
						 sizeof dictionary - 1) != Z_OK)
				return SPDY_ERROR;
			continue;
		}
		if (rv == Z_BUF_ERROR && z->avail_in == 0)
			break;          /* all input used: the block is done */
		if (rv != Z_OK)
			return SPDY_ERROR;   /* corrupt, or the stream ended */
		if (z->avail_in == 0 || z->avail_out == 0)
			break;
	}
	/* Input left, or a full output (which may hide more to come), means
	 * the plain block does not fit cap. */
	if (z->avail_in != 0 || z->avail_out == 0)
		return SPDY_ERROR;
	return (long)(cap - z->avail_out);
}

int spdy_nv_begin(struct spdy_nv_iter *it, const uint8_t *plain, size_t len)
{
	if (len < 4)
		return SPDY_ERROR;
	it->count = get32(plain);
	it->p = plain + 4;
	it->left = len - 4;
	/* Each pair takes at least 9 bytes: two lengths and a name byte. */
	if (it->count > it->left / 9)
		return SPDY_ERROR;
	return 0;
}

int spdy_nv_next(struct spdy_nv_iter *it, struct spdy_nv *nv)
{
	uint32_t n;

	if (it->count == 0)
		return it->left == 0 ? 0 : SPDY_ERROR;
	if (it->left < 4)
		return SPDY_ERROR;
	n = get32(it->p);
	if (n == 0 || n > it->left - 4)
		return SPDY_ERROR;
	nv->name = (const char *)it->p + 4;
	nv->name_len = n;
	it->p += 4 + (size_t)n;
	it->left -= 4 + (size_t)n;
	if (it->left < 4)
		return SPDY_ERROR;
	n = get32(it->p);
	if (n > it->left - 4)
		return SPDY_ERROR;
	nv->value = (const char *)it->p + 4;
	nv->value_len = n;
	it->p += 4 + (size_t)n;
	it->left -= 4 + (size_t)n;
	it->count--;
	return 1;
}

int spdy_nv_find(const uint8_t *plain, size_t len, const char *name, struct spdy_nv *value)
{
	struct spdy_nv_iter it;
	struct spdy_nv nv;
	size_t nl = strlen(name);
	int found = 0, r;

	if (spdy_nv_begin(&it, plain, len) != 0)
		return SPDY_ERROR;
	/* The whole block is checked, not just up to the pair sought. */
	while ((r = spdy_nv_next(&it, &nv)) == 1) {
		if (!found && nv.name_len == nl && strncasecmp(nv.name, name, nl) == 0) {
			*value = nv;
			found = 1;
		}
	}
	return r == 0 ? found : SPDY_ERROR;
}

long spdy_nv_encode(const char *const *pairs, uint8_t *out, size_t cap)
{
	size_t n = 4, count = 0;

	for (size_t i = 0; pairs[i] != NULL && pairs[i + 1] != NULL; i += 2) {
		size_t nl = strlen(pairs[i]), vl = strlen(pairs[i + 1]);

		if (nl == 0 || cap - n < 8 || cap - n - 8 < nl + vl)
			return SPDY_ERROR;
		put32(out + n, (uint32_t)nl);
		memcpy(out + n + 4, pairs[i], nl);
		n += 4 + nl;
		put32(out + n, (uint32_t)vl);
		memcpy(out + n + 4, pairs[i + 1], vl);
		n += 4 + vl;
		count++;
	}
	if (cap < 4)
		return SPDY_ERROR;
	put32(out, (uint32_t)count);
	return (long)n;
}

/* Compresses a plain block into out with a sync flush, so the peer can
 * decompress it whole now while the context carries on. */
static long deflate_block(struct spdy_zout *zo, const uint8_t *plain, size_t len, uint8_t *out,
			  size_t cap)
{
	z_stream *z = &zo->z;

	if (!zo->ready)
		return SPDY_ERROR;
	z->next_in = (Bytef *)plain;
	z->avail_in = (uInt)len;
	z->next_out = out;
	z->avail_out = (uInt)cap;
	if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0 || z->avail_out == 0)
		return SPDY_ERROR;   /* a full output may hide pending bytes */
	return (long)(cap - z->avail_out);
}

static long syn_frame(struct spdy_zout *zo, uint16_t type, uint32_t stream_id,
		      uint32_t assoc_id, uint8_t priority, uint8_t flags,
		      const char *const *pairs, uint8_t *out, size_t cap)
{
	uint8_t plain[8192];
	size_t fixed = type == SPDY_SYN_STREAM ? 10 : 4;
	long pl, cl;

	if (cap < SPDY_HEADER_SIZE + fixed)
		return SPDY_ERROR;
	pl = spdy_nv_encode(pairs, plain, sizeof plain);
	if (pl < 0)
		return SPDY_ERROR;
	cl = deflate_block(zo, plain, (size_t)pl, out + SPDY_HEADER_SIZE + fixed,
			   cap - SPDY_HEADER_SIZE - fixed);
	if (cl < 0 || (size_t)cl + fixed > SPDY_MAX_LENGTH)
		return SPDY_ERROR;
	control_header(out, type, flags, (uint32_t)((size_t)cl + fixed));
	put32(out + 8, stream_id & 0x7FFFFFFFu);
	if (type == SPDY_SYN_STREAM) {
		put32(out + 12, assoc_id & 0x7FFFFFFFu);
		out[16] = (uint8_t)((priority & 7) << 5);
		out[17] = 0;    /* credential slot */
	}
	return (long)(SPDY_HEADER_SIZE + fixed + (size_t)cl);
}

long spdy_syn_stream(struct spdy_zout *zo, uint32_t stream_id, uint32_t assoc_id,
		     uint8_t priority, uint8_t flags, const char *const *pairs, uint8_t *out,
		     size_t cap)
{
	return syn_frame(zo, SPDY_SYN_STREAM, stream_id, assoc_id, priority, flags, pairs, out,
			 cap);
}

long spdy_syn_reply(struct spdy_zout *zo, uint32_t stream_id, uint8_t flags,
		    const char *const *pairs, uint8_t *out, size_t cap)
{
	return syn_frame(zo, SPDY_SYN_REPLY, stream_id, 0, 0, flags, pairs, out, cap);
}
