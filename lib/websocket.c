/* websocket.c — RFC 6455 handshake key, frame parsing and encoding, and
 * message reassembly, on caller-owned buffers. */
#include "lib/websocket.h"

#include <openssl/sha.h>
#include <string.h>

#include "lib/b64.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int ws_accept_key(const char *client_key, char out[WS_ACCEPT_SIZE])
{
	uint8_t raw[24];
	uint8_t digest[SHA_DIGEST_LENGTH];
	char joined[24 + sizeof ws_guid];
	size_t n;

	if (client_key == NULL)
		return -1;
	/* Proxies may pad header values with blanks. */
	while (*client_key == ' ' || *client_key == '\t')
		client_key++;
	n = strcspn(client_key, " \t\r\n");
	if (n != 24 || b64_decode(client_key, n, raw) != 16)
		return -1;
	memcpy(joined, client_key, n);
	memcpy(joined + n, ws_guid, sizeof ws_guid - 1);
	SHA1((const unsigned char *)joined, n + sizeof ws_guid - 1, digest);
	b64_encode(digest, sizeof digest, out);
	return 0;
}

void ws_mask(uint8_t *data, size_t n, const uint8_t key[4], uint64_t offset)
{
	for (size_t i = 0; i < n; i++)
		data[i] ^= key[(offset + i) & 3];
}

long ws_parse_frame(const uint8_t *buf, size_t len, bool from_client, uint8_t *out,
		    size_t out_cap, struct ws_frame *f)
{
	size_t hl = 2;
	uint64_t plen;
	const uint8_t *key = NULL;

	if (len < 2)
		return WS_NEED_MORE;
	memset(f, 0, sizeof *f);
	f->fin = (buf[0] & 0x80) != 0;
	f->opcode = buf[0] & 0x0F;
	f->masked = (buf[1] & 0x80) != 0;
	/* No extension was negotiated, so the reserved bits mean nothing. */
	if (buf[0] & 0x70)
		return WS_ERROR;
	switch (f->opcode) {
	case WS_OP_CONT:
	case WS_OP_TEXT:
	case WS_OP_BINARY:
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		break;
	default:
		return WS_ERROR;
	}
	/* Clients mask so that caches in between never see attacker-chosen
	 * bytes; a server must not. */
	if (f->masked != from_client)
		return WS_ERROR;
	plen = buf[1] & 0x7F;
	if (plen == 126) {
		if (len < 4)
			return WS_NEED_MORE;
		plen = (uint64_t)buf[2] << 8 | buf[3];
		if (plen < 126)
			return WS_ERROR;      /* not the minimal encoding */
		hl = 4;
	} else if (plen == 127) {
		if (len < 10)
			return WS_NEED_MORE;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | buf[2 + i];
		if ((plen >> 63) != 0 || plen <= 0xFFFF)
			return WS_ERROR;
		hl = 10;
	}
	if (f->opcode >= WS_OP_CLOSE && (plen > WS_MAX_CONTROL || !f->fin))
		return WS_ERROR;
	if (f->opcode == WS_OP_CLOSE && plen == 1)
		return WS_ERROR;
	/* Refuse oversize frames from the header alone, before buffering them. */
	if (plen > out_cap)
		return WS_ERROR;
	if (f->masked) {
		if (len < hl + 4)
			return WS_NEED_MORE;
		key = buf + hl;
		hl += 4;
	}
	if (len - hl < plen)
		return WS_NEED_MORE;
	f->len = plen;
	if (plen > 0) {
		memcpy(out, buf + hl, (size_t)plen);
		if (key != NULL)
			ws_mask(out, (size_t)plen, key, 0);
	}
	if (f->opcode == WS_OP_CLOSE && plen >= 2)
		f->close_code = (uint16_t)(out[0] << 8 | out[1]);
	return (long)(hl + plen);
}

size_t ws_frame_header(uint8_t *out, int opcode, bool fin, uint64_t len,
		       const uint8_t *mask_key)
{
	size_t n = 2;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
	out[1] = mask_key != NULL ? 0x80 : 0;
	if (len < 126) {
		out[1] |= (uint8_t)len;
	} else if (len <= 0xFFFF) {
		out[1] |= 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] |= 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask_key != NULL) {
		memcpy(out + n, mask_key, 4);
		n += 4;
	}
	return n;
}

void ws_assembler_init(struct ws_assembler *a, uint8_t *buf, size_t cap)
{
	memset(a, 0, sizeof *a);
	a->buf = buf;
	a->cap = cap;
}

int ws_assemble(struct ws_assembler *a, const struct ws_frame *f, const uint8_t *payload)
{
	if (f->opcode == WS_OP_CONT) {
		if (!a->active)
			return WS_ERROR;
	} else if (f->opcode == WS_OP_TEXT || f->opcode == WS_OP_BINARY) {
		if (a->active)
			return WS_ERROR;
		a->active = true;
		a->opcode = f->opcode;
		a->len = 0;
	} else {
		return WS_ERROR;
	}
	if (f->len > a->cap - a->len) {
		a->active = false;
		return WS_ERROR;
	}
	if (f->len > 0)
		memcpy(a->buf + a->len, payload, (size_t)f->len);
	a->len += (size_t)f->len;
	if (!f->fin)
		return 0;
	a->active = false;
	return 1;
}

const char *ws_pick_protocol(const char *offered, const char *const *supported)
{
	if (offered == NULL)
		return NULL;
	for (size_t i = 0; supported[i] != NULL; i++) {
		size_t want = strlen(supported[i]);
		const char *p = offered;

		while (*p != '\0') {
			size_t n;

			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			n = strcspn(p, ", \t");
			if (n == want && strncmp(p, supported[i], n) == 0)
				return supported[i];
			p += n;
		}
	}
	return NULL;
}
