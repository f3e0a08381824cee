/* test_cmd.c — unit tests of the raft entry layout (store/cmd.c): batches
 * round-trip, and damaged entries are refused without reading outside them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <raft.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "store/cmd.h"

#define HEADER (4 + 1 + 8 + 8 + 4)

/* A finished batch, copied into an exactly sized heap buffer so that ASan
 * flags any read past its end. */
struct blob {
	uint8_t *p;
	size_t len;
};

static struct blob blob_copy(const void *p, size_t len)
{
	struct blob b = {malloc(len ? len : 1), len};
	assert_non_null(b.p);
	if (len)
		memcpy(b.p, p, len);
	return b;
}

/* Builds a batch of n commands; command i is cmd_len(i) bytes of pattern. */
static struct blob build(uint64_t origin, uint64_t seq, size_t n, size_t (*cmd_len)(size_t))
{
	struct cmd_builder cb;
	void *buf;
	size_t len;
	assert_int_equal(cmd_builder_init(&cb, origin, seq), CAP_OK);
	for (size_t i = 0; i < n; i++) {
		size_t l = cmd_len(i);
		uint8_t *c = malloc(l ? l : 1);
		assert_non_null(c);
		for (size_t j = 0; j < l; j++)
			c[j] = (uint8_t)(i * 31 + j);
		assert_int_equal(cmd_builder_add(&cb, c, l), CAP_OK);
		free(c);
	}
	assert_int_equal(cmd_builder_finish(&cb, &buf, &len), CAP_OK);
	struct blob b = blob_copy(buf, len);
	raft_free(buf);
	return b;
}

static void check_decoded(const struct cmd_entry *e, uint64_t origin, uint64_t seq, size_t n,
			  size_t (*cmd_len)(size_t))
{
	assert_true(e->origin == origin);
	assert_true(e->seq == seq);
	assert_int_equal(e->count, n);
	for (size_t i = 0; i < n; i++) {
		size_t l = cmd_len(i);
		assert_int_equal(e->lens[i], l);
		for (size_t j = 0; j < l; j++)
			assert_int_equal(e->cmds[i][j], (uint8_t)(i * 31 + j));
	}
}

static size_t len_small(size_t i)
{
	return i % 17;   /* includes empty commands */
}

static size_t len_five(size_t i)
{
	(void)i;
	return 5;
}

static size_t len_large(size_t i)
{
	return i == 1 ? (size_t)3 << 20 : 100;
}

/* Bytes of a batch before its padding. */
static size_t unpadded(size_t n, size_t (*cmd_len)(size_t))
{
	size_t t = HEADER;
	for (size_t i = 0; i < n; i++)
		t += 4 + cmd_len(i);
	return t;
}

/* An empty batch keeps its origin and sequence and decodes to no commands. */
static void test_roundtrip_empty(void **state)
{
	struct cmd_entry e;
	(void)state;
	struct blob b = build(UINT64_MAX, 0x0102030405060708ull, 0, len_five);
	assert_int_equal(b.len % 8, 0);
	assert_int_equal(cmd_decode(b.p, b.len, &e), CAP_OK);
	check_decoded(&e, UINT64_MAX, 0x0102030405060708ull, 0, len_five);
	cmd_entry_clear(&e);
	free(b.p);
}

/* One command comes back byte for byte. */
static void test_roundtrip_one(void **state)
{
	struct cmd_entry e;
	(void)state;
	struct blob b = build(7, 9, 1, len_five);
	assert_int_equal(b.len % 8, 0);
	assert_int_equal(cmd_decode(b.p, b.len, &e), CAP_OK);
	check_decoded(&e, 7, 9, 1, len_five);
	cmd_entry_clear(&e);
	free(b.p);
}

/* Many commands of varied sizes, empty ones included, come back in order. */
static void test_roundtrip_many(void **state)
{
	struct cmd_entry e;
	(void)state;
	struct blob b = build(3, 1u << 31, 5000, len_small);
	assert_int_equal(b.len % 8, 0);
	assert_int_equal(cmd_decode(b.p, b.len, &e), CAP_OK);
	check_decoded(&e, 3, 1u << 31, 5000, len_small);
	cmd_entry_clear(&e);
	free(b.p);
}

/* A multi-megabyte command between small ones survives the builder's growth. */
static void test_roundtrip_large(void **state)
{
	struct cmd_entry e;
	(void)state;
	struct blob b = build(1, 2, 3, len_large);
	assert_int_equal(cmd_decode(b.p, b.len, &e), CAP_OK);
	check_decoded(&e, 1, 2, 3, len_large);
	cmd_entry_clear(&e);
	free(b.p);
}

/* The padding raft_uv adds is optional: the unpadded bytes decode too. */
static void test_unpadded_accepted(void **state)
{
	struct cmd_entry e;
	(void)state;
	struct blob b = build(1, 2, 3, len_five);
	size_t n = unpadded(3, len_five);
	assert_true(n < b.len);
	struct blob c = blob_copy(b.p, n);
	assert_int_equal(cmd_decode(c.p, c.len, &e), CAP_OK);
	check_decoded(&e, 1, 2, 3, len_five);
	cmd_entry_clear(&e);
	free(c.p);
	free(b.p);
}

/* A clear without a finish frees the builder's memory (ASan would leak). */
static void test_builder_clear(void **state)
{
	struct cmd_builder cb;
	(void)state;
	assert_int_equal(cmd_builder_init(&cb, 1, 1), CAP_OK);
	assert_int_equal(cmd_builder_add(&cb, "abc", 3), CAP_OK);
	cmd_builder_clear(&cb);
	assert_null(cb.buf);
}

static void expect_corrupt(const uint8_t *p, size_t len)
{
	struct cmd_entry e;
	struct blob c = blob_copy(p, len);
	assert_int_equal(cmd_decode(c.p, c.len, &e), CAP_ECORRUPT);
	/* Nothing is left allocated, and clearing again is harmless. */
	assert_null(e.cmds);
	assert_null(e.lens);
	cmd_entry_clear(&e);
	free(c.p);
}

/* Every truncation that cuts into the header or a command is refused. */
static void test_truncated(void **state)
{
	(void)state;
	struct blob b = build(5, 6, 4, len_small);
	size_t n = unpadded(4, len_small);
	for (size_t len = 0; len < n; len++)
		expect_corrupt(b.p, len);
	free(b.p);
}

/* A wrong magic or an unknown version is refused. */
static void test_magic_and_version(void **state)
{
	(void)state;
	struct blob b = build(5, 6, 2, len_five);
	b.p[0] = 'X';
	expect_corrupt(b.p, b.len);
	b.p[0] = 'C';
	b.p[3] = 's';
	expect_corrupt(b.p, b.len);
	b.p[3] = 'S';
	b.p[4] = CMD_VERSION + 1;
	expect_corrupt(b.p, b.len);
	b.p[4] = 0;
	expect_corrupt(b.p, b.len);
	b.p[4] = CMD_VERSION;
	struct cmd_entry e;
	assert_int_equal(cmd_decode(b.p, b.len, &e), CAP_OK);
	cmd_entry_clear(&e);
	free(b.p);
}

static void set_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A count larger than the commands present, up to UINT32_MAX, is refused
 * (and does not make the decoder allocate for it). */
static void test_count_too_large(void **state)
{
	(void)state;
	struct blob b = build(5, 6, 3, len_five);
	/* Zero padding reads as empty commands (a valid encoding), so claim one
	 * more than the padding could hold. */
	size_t pad = b.len - unpadded(3, len_five);
	set_u32(b.p + 21, (uint32_t)(3 + pad / 4 + 1));
	expect_corrupt(b.p, b.len);
	set_u32(b.p + 21, 1000);
	expect_corrupt(b.p, b.len);
	set_u32(b.p + 21, UINT32_MAX);
	expect_corrupt(b.p, b.len);
	free(b.p);
}

/* A command length reaching past the end of the entry is refused. */
static void test_length_past_end(void **state)
{
	(void)state;
	struct blob b = build(5, 6, 3, len_five);
	/* The last command's length field. */
	size_t last = HEADER + 2 * (4 + 5);
	uint32_t lens[] = {(uint32_t)(b.len - last - 4 + 1), 1u << 20, UINT32_MAX,
			   UINT32_MAX - 3};
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		set_u32(b.p + last, lens[i]);
		expect_corrupt(b.p, b.len);
	}
	/* The same on the first command. */
	set_u32(b.p + last, 5);
	set_u32(b.p + HEADER, UINT32_MAX);
	expect_corrupt(b.p, b.len);
	free(b.p);
}

/* A count smaller than the commands present leaves non-zero bytes after the
 * last one: refused. */
static void test_count_too_small(void **state)
{
	(void)state;
	struct blob b = build(5, 6, 3, len_five);
	set_u32(b.p + 21, 2);
	expect_corrupt(b.p, b.len);
	free(b.p);
}

/* Any non-zero byte in the padding is refused. */
static void test_nonzero_padding(void **state)
{
	(void)state;
	struct blob b = build(5, 6, 3, len_five);
	size_t n = unpadded(3, len_five);
	assert_true(n < b.len);
	for (size_t i = n; i < b.len; i++) {
		b.p[i] = 1;
		expect_corrupt(b.p, b.len);
		b.p[i] = 0;
	}
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_empty),
		cmocka_unit_test(test_roundtrip_one),
		cmocka_unit_test(test_roundtrip_many),
		cmocka_unit_test(test_roundtrip_large),
		cmocka_unit_test(test_unpadded_accepted),
		cmocka_unit_test(test_builder_clear),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_magic_and_version),
		cmocka_unit_test(test_count_too_large),
		cmocka_unit_test(test_length_past_end),
		cmocka_unit_test(test_count_too_small),
		cmocka_unit_test(test_nonzero_padding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
