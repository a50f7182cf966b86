/* Tests for offline-store/crypto.c: blobs, keyed hashes, key files. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "offline-store/crypto.h"
#include "offline-store/store.h"
#include "tests/harness.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;
	if (n > cap)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void write_file(const char *path, const char *data, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return;
	size_t n = strlen(data);
	if (write(fd, data, n) != (ssize_t)n)
		fprintf(stderr, "short write to %s\n", path);
	fchmod(fd, mode);
	close(fd);
}

static char *path_in(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static const char key_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/* The GCM spec's test case 16 (AES-256, 96-bit IV, AAD), twice on one context. */
static void test_gcm_known_answer(void)
{
	uint8_t key[32], pt[60], aad[20], iv[12], ct[60], tag[16];
	unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, sizeof(key));
	unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
	      "49a6b525b16aedf5aa0de657ba637b39",
	      pt, sizeof(pt));
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, sizeof(aad));
	unhex("cafebabefacedbaddecaf888", iv, sizeof(iv));
	unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10"
	      "56828838c5f61e6393ba7a0abcc9f662",
	      ct, sizeof(ct));
	unhex("76fc6ece0f4e1768cddf8853bb2d551b", tag, sizeof(tag));

	store_crypto c = STORE_CRYPTO_NULL;
	REQUIRE(store_crypto_init(&c, key) == 0);
	for (int round = 0; round < 2; round++) {
		uint8_t blob[sizeof(pt) + STORE_BLOB_OVERHEAD];
		CHECK_INT(store_crypto_seal(&c, iv, aad, sizeof(aad), pt, sizeof(pt), blob), 0);
		CHECK_INT(blob[0], STORE_BLOB_VERSION);
		CHECK(memcmp(blob + 1, iv, 12) == 0);
		CHECK(memcmp(blob + 13, ct, sizeof(ct)) == 0);
		CHECK(memcmp(blob + 13 + sizeof(ct), tag, 16) == 0);
		uint8_t out[sizeof(pt)];
		size_t n = 0;
		CHECK_INT(store_crypto_open(&c, aad, sizeof(aad), blob, sizeof(blob), out, &n), 0);
		CHECK_INT(n, sizeof(pt));
		CHECK(memcmp(out, pt, sizeof(pt)) == 0);
	}
	store_crypto_deinit(&c);
	store_crypto_deinit(&c); /* idempotent */
}

static void test_tamper_detection(void)
{
	uint8_t key[32], key2[32];
	unhex(key_hex, key, sizeof(key));
	memcpy(key2, key, sizeof(key));
	key2[31] ^= 1;
	store_crypto c = STORE_CRYPTO_NULL, c2 = STORE_CRYPTO_NULL;
	REQUIRE(store_crypto_init(&c, key) == 0);
	REQUIRE(store_crypto_init(&c2, key2) == 0);

	const char pt[] = "{\"resourceType\":\"Observation\",\"id\":\"o1\"}";
	const char aad[] = "row-1", aad_other[] = "row-2";
	uint8_t blob[sizeof(pt) + STORE_BLOB_OVERHEAD], out[sizeof(pt)];
	size_t n = 0;
	REQUIRE(store_crypto_seal(&c, NULL, aad, 5, pt, sizeof(pt), blob) == 0);
	CHECK_INT(store_crypto_open(&c, aad, 5, blob, sizeof(blob), out, &n), 0);
	CHECK(n == sizeof(pt) && memcmp(out, pt, n) == 0);
	CHECK(memmem(blob, sizeof(blob), "Observation", 11) == NULL);

	/* Every single-bit flip anywhere in the blob is caught. */
	size_t caught = 0;
	for (size_t i = 0; i < sizeof(blob); i++) {
		blob[i] ^= 0x04;
		memset(out, 'x', sizeof(out));
		if (store_crypto_open(&c, aad, 5, blob, sizeof(blob), out, &n) == STORE_E_CORRUPT && n == 0 &&
		    memchr(out, 'O', sizeof(out)) == NULL)
			caught++;
		blob[i] ^= 0x04;
	}
	CHECK_INT(caught, sizeof(blob));
	CHECK_INT(store_crypto_open(&c, aad_other, 5, blob, sizeof(blob), out, &n), STORE_E_CORRUPT);
	CHECK_INT(store_crypto_open(&c, aad, 4, blob, sizeof(blob), out, &n), STORE_E_CORRUPT);
	CHECK_INT(store_crypto_open(&c2, aad, 5, blob, sizeof(blob), out, &n), STORE_E_CORRUPT);
	CHECK_INT(store_crypto_open(&c, aad, 5, blob, sizeof(blob) - 1, out, &n), STORE_E_CORRUPT);
	CHECK_INT(store_crypto_open(&c, aad, 5, blob, STORE_BLOB_OVERHEAD - 1, out, &n), STORE_E_CORRUPT);
	/* Still opens after all that (the context is reusable after failures). */
	CHECK_INT(store_crypto_open(&c, aad, 5, blob, sizeof(blob), out, &n), 0);

	/* An empty plaintext seals and opens. */
	uint8_t empty[STORE_BLOB_OVERHEAD];
	CHECK_INT(store_crypto_seal(&c, NULL, aad, 5, NULL, 0, empty), 0);
	CHECK_INT(store_crypto_open(&c, aad, 5, empty, sizeof(empty), out, &n), 0);
	CHECK_INT(n, 0);

	store_crypto_deinit(&c);
	store_crypto_deinit(&c2);
}

static void test_nonces_unique(void)
{
	uint8_t key[32];
	unhex(key_hex, key, sizeof(key));
	store_crypto c = STORE_CRYPTO_NULL;
	REQUIRE(store_crypto_init(&c, key) == 0);
	enum { N = 2000 }; /* several refills of the pool */
	static uint8_t nonces[N][STORE_NONCE_LEN];
	uint8_t blob[4 + STORE_BLOB_OVERHEAD];
	for (int i = 0; i < N; i++) {
		REQUIRE(store_crypto_seal(&c, NULL, NULL, 0, "abcd", 4, blob) == 0);
		memcpy(nonces[i], blob + 1, STORE_NONCE_LEN);
	}
	size_t dup = 0;
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			dup += memcmp(nonces[i], nonces[j], STORE_NONCE_LEN) == 0;
	CHECK_INT(dup, 0);

	/* A forked child never reuses the parent's pending nonces. */
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		uint8_t b[4 + STORE_BLOB_OVERHEAD];
		int ok = store_crypto_seal(&c, NULL, NULL, 0, "abcd", 4, b) == 0 &&
			 write(fds[1], b + 1, STORE_NONCE_LEN) == STORE_NONCE_LEN;
		_exit(ok ? 0 : 1);
	}
	close(fds[1]);
	uint8_t child[STORE_NONCE_LEN];
	CHECK_INT(read(fds[0], child, sizeof(child)), sizeof(child));
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	REQUIRE(store_crypto_seal(&c, NULL, NULL, 0, "abcd", 4, blob) == 0);
	CHECK(memcmp(child, blob + 1, STORE_NONCE_LEN) != 0);
	store_crypto_deinit(&c);
}

static void test_body_hash(void)
{
	uint8_t key[32], key2[32], h1[16], h2[16], h3[16], h4[16];
	unhex(key_hex, key, sizeof(key));
	memcpy(key2, key, sizeof(key));
	key2[0] ^= 0x80;
	store_crypto c = STORE_CRYPTO_NULL, c2 = STORE_CRYPTO_NULL;
	REQUIRE(store_crypto_init(&c, key) == 0);
	REQUIRE(store_crypto_init(&c2, key2) == 0);
	CHECK_INT(store_crypto_body_hash(&c, "{\"a\":1}", 7, h1), 0);
	CHECK_INT(store_crypto_body_hash(&c, "{\"a\":2}", 7, h2), 0);
	CHECK_INT(store_crypto_body_hash(&c, "{\"a\":1}", 7, h3), 0);
	CHECK_INT(store_crypto_body_hash(&c2, "{\"a\":1}", 7, h4), 0);
	CHECK(memcmp(h1, h3, 16) == 0);
	CHECK(memcmp(h1, h2, 16) != 0);
	CHECK(memcmp(h1, h4, 16) != 0);
	store_crypto_deinit(&c);
	store_crypto_deinit(&c2);
}

/* The SipHash-2-4 paper's vectors: key 00..0f, message 00..(n-1). */
static void test_siphash_vectors(void)
{
	uint8_t key[16], msg[64];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	store_siphash h;
	store_siphash_init(&h, key);
	CHECK(store_siphash_final(&h) == 0x726fdb47dd0e0e31ULL);
	store_siphash_init(&h, key);
	store_siphash_update(&h, msg, 15);
	CHECK(store_siphash_final(&h) == 0xa129ca6149be45e5ULL);

	/* Streaming in any split gives the one-shot value. */
	for (size_t len = 0; len <= 40; len++) {
		store_siphash_init(&h, key);
		store_siphash_update(&h, msg, len);
		uint64_t whole = store_siphash_final(&h);
		for (size_t cut = 0; cut <= len; cut++) {
			store_siphash_init(&h, key);
			store_siphash_update(&h, msg, cut);
			for (size_t i = cut; i < len; i++)
				store_siphash_update(&h, msg + i, 1);
			CHECK(store_siphash_final(&h) == whole);
		}
	}
}

static void test_key_file_load(void)
{
	char *dir = harness_tmpdir();
	REQUIRE(dir);
	char *kf = path_in(dir, "key");
	uint8_t key[32], want[32];
	char err[512];
	unhex(key_hex, want, sizeof(want));

	char with_nl[80];
	snprintf(with_nl, sizeof(with_nl), "%s\n", key_hex);
	write_file(kf, with_nl, 0600);
	CHECK_INT(store_key_load(kf, key, err, sizeof(err)), 0);
	CHECK(memcmp(key, want, 32) == 0);
	write_file(kf, key_hex, 0400);
	memset(key, 0, sizeof(key));
	CHECK_INT(store_key_load(kf, key, err, sizeof(err)), 0);
	CHECK(memcmp(key, want, 32) == 0);
	write_file(kf, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", 0600);
	CHECK_INT(store_key_load(kf, key, err, sizeof(err)), 0);
	CHECK(memcmp(key, want, 32) == 0);

	/* Too open: refused, says chmod 600, never shows the key. */
	static const mode_t open_modes[] = { 0644, 0640, 0604, 0610, 0601, 0660 };
	for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
		write_file(kf, with_nl, open_modes[i]);
		err[0] = '\0';
		CHECK_INT(store_key_load(kf, key, err, sizeof(err)), STORE_E_KEY);
		CHECK(strstr(err, "chmod 600") != NULL);
		CHECK(strstr(err, kf) != NULL);
		CHECK(strstr(err, "0001020304") == NULL);
	}
	write_file(kf, with_nl, 0644);
	CHECK_INT(store_key_load(kf, key, err, sizeof(err)), STORE_E_KEY);
	CHECK(strstr(err, "0644") != NULL);

	/* Malformed content: each says what is wrong and never echoes the key. */
	static const struct {
		const char *content;
		const char *says;
	} bad[] = {
		{ "", "holds 0 hex digits" },
		{ "0001020304", "holds 10 hex digits" },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1", "holds 63 hex digits" },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0", "holds 65 hex digits" },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n", "too long" },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n", "too long" },
		{ "0g0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "character 2 is not a hex" },
		{ " 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "character 1 is not a hex" },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f000102030405060708090a0b0c0d",
		  "too long" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(kf, bad[i].content, 0600);
		err[0] = '\0';
		CHECK_INT(store_key_load(kf, key, err, sizeof(err)), STORE_E_KEY);
		bool says = strstr(err, bad[i].says) != NULL;
		if (!says)
			fprintf(stderr, "case %zu: message does not say \"%s\": %.400s\n", i, bad[i].says, err);
		CHECK(says);
		CHECK(strstr(err, "0001020304") == NULL);
	}

	/* Not a regular file: a directory, a FIFO (must not block). */
	unlink(kf);
	REQUIRE(mkdir(kf, 0700) == 0);
	CHECK_INT(store_key_load(kf, key, err, sizeof(err)), STORE_E_KEY);
	CHECK(strstr(err, "not a regular file") != NULL);
	rmdir(kf);
	REQUIRE(mkfifo(kf, 0600) == 0);
	CHECK_INT(store_key_load(kf, key, err, sizeof(err)), STORE_E_KEY);
	CHECK(strstr(err, "not a regular file") != NULL);
	unlink(kf);

	CHECK_INT(store_key_load(kf, key, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "does not exist") != NULL);

	free(kf);
	rmdir(dir);
	free(dir);
}

static void test_key_file_generate(void)
{
	char *dir = harness_tmpdir();
	REQUIRE(dir);
	char *kf = path_in(dir, "new.key");
	uint8_t key[32], again[32];
	char err[512];
	struct stat st;

	mode_t old = umask(0); /* the file must be 0600 whatever the umask */
	CHECK_INT(store_key_generate(kf, key, err, sizeof(err)), 0);
	umask(old);
	REQUIRE(stat(kf, &st) == 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(st.st_size, 65);
	CHECK_INT(store_key_load(kf, again, err, sizeof(err)), 0);
	CHECK(memcmp(key, again, 32) == 0);

	/* Never overwrites. */
	CHECK_INT(store_key_generate(kf, again, err, sizeof(err)), -EEXIST);
	CHECK_INT(store_key_load(kf, again, err, sizeof(err)), 0);
	CHECK(memcmp(key, again, 32) == 0);

	/* Two generated keys differ. */
	char *kf2 = path_in(dir, "other.key");
	CHECK_INT(store_key_generate(kf2, again, err, sizeof(err)), 0);
	CHECK(memcmp(key, again, 32) != 0);

	/* A missing directory: an error naming the file, nothing left behind. */
	char *kf3 = path_in(dir, "nodir/k");
	CHECK(store_key_generate(kf3, again, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, kf3) != NULL);

	unlink(kf);
	unlink(kf2);
	free(kf);
	free(kf2);
	free(kf3);
	rmdir(dir);
	free(dir);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_gcm_known_answer), HARNESS_TEST(test_tamper_detection),
		HARNESS_TEST(test_nonces_unique),    HARNESS_TEST(test_body_hash),
		HARNESS_TEST(test_siphash_vectors),  HARNESS_TEST(test_key_file_load),
		HARNESS_TEST(test_key_file_generate),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
