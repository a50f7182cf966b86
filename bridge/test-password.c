/*
 * Tests for bridge/password.c: round trips, wrong passwords, tampered and
 * malformed stored strings (never a crash, always PASSWORD_E_FORMAT), fresh
 * salts, the cost bounds, rehash decisions and the policy messages. ln=10
 * everywhere (valgrind runs these) but in one test at the default cost.
 */
#include "bridge/password.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define LN 10

static const char pw[] = "correct horse battery staple";

static int verify(const char *p, const char *stored)
{
	return password_verify(p, strlen(p), stored);
}

/* A stored string for pw at ln=10. */
static void make(char out[PASSWORD_HASH_SIZE])
{
	int rc = password_hash(pw, strlen(pw), LN, out, PASSWORD_HASH_SIZE);
	CHECK_INT(rc, 0);
}

/* ---- hashing and verifying --------------------------------------------------------- */

static void test_round_trip(void)
{
	char h[PASSWORD_HASH_SIZE];
	make(h);
	CHECK_INT(strncmp(h, "$scrypt$ln=10,r=8,p=1$", 22), 0);
	CHECK_INT(strlen(h), 22 + 22 + 1 + 43);
	CHECK(h[44] == '$');
	CHECK(strspn(h + 22, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/$") == strlen(h + 22));
	CHECK_INT(verify(pw, h), 0);
	/* Wrong passwords: one character off, a prefix, a suffix, empty, longer. */
	CHECK_INT(verify("correct horse battery stapLe", h), PASSWORD_E_MISMATCH);
	CHECK_INT(verify("correct horse battery stapl", h), PASSWORD_E_MISMATCH);
	CHECK_INT(verify("correct horse battery staple ", h), PASSWORD_E_MISMATCH);
	CHECK_INT(verify("", h), PASSWORD_E_MISMATCH);
	CHECK_INT(password_verify(NULL, 0, h), PASSWORD_E_MISMATCH);
	/* The length counts, not the NUL: an embedded NUL is part of the password. */
	char with_nul[sizeof(pw) + 1];
	memcpy(with_nul, pw, sizeof(pw));
	with_nul[sizeof(pw)] = 'x';
	CHECK_INT(password_verify(with_nul, sizeof(with_nul), h), PASSWORD_E_MISMATCH);
	CHECK_INT(password_verify(with_nul, strlen(pw), h), 0);

	/* Binary and empty passwords hash and verify too (the policy is separate). */
	static const char bin[] = { 0, 1, (char)0xff, 0, 'a' };
	REQUIRE(password_hash(bin, sizeof(bin), LN, h, sizeof(h)) == 0);
	CHECK_INT(password_verify(bin, sizeof(bin), h), 0);
	CHECK_INT(password_verify(bin, sizeof(bin) - 1, h), PASSWORD_E_MISMATCH);
	REQUIRE(password_hash(NULL, 0, LN, h, sizeof(h)) == 0);
	CHECK_INT(password_verify("", 0, h), 0);
	CHECK_INT(verify("a", h), PASSWORD_E_MISMATCH);

	/* The longest password allowed; one byte more is refused / never matches. */
	char *big = malloc(PASSWORD_MAX_BYTES + 1);
	REQUIRE(big);
	memset(big, 'q', PASSWORD_MAX_BYTES + 1);
	CHECK_INT(password_hash(big, PASSWORD_MAX_BYTES, LN, h, sizeof(h)), 0);
	CHECK_INT(password_verify(big, PASSWORD_MAX_BYTES, h), 0);
	CHECK_INT(password_verify(big, PASSWORD_MAX_BYTES + 1, h), PASSWORD_E_MISMATCH);
	CHECK_INT(password_hash(big, PASSWORD_MAX_BYTES + 1, LN, h, sizeof(h)), -EINVAL);
	CHECK_STR(h, "");
	free(big);
}

/*
 * Known answers. scrypt("password", "NaCl", N=1024, r=8, p=16) is the RFC 7914
 * section 12 vector; its 4-byte salt is under our minimum, so it must be
 * refused. The vectors with a 16-byte salt were computed with Python's
 * hashlib.scrypt (which gives the RFC answer for the RFC input): they pin the
 * parameter order and the base64 spelling of the format.
 */
static void test_known_answer(void)
{
	CHECK_INT(verify("password", "$scrypt$ln=10,r=8,p=16$TmFDbA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWIurzDZLiKj"
				     "iG/xCSedmDDaxyevuUqD7m2DYMvfoswGQA"),
		  PASSWORD_E_FORMAT);
	static const char v1[] = "$scrypt$ln=10,r=8,p=16$TmFDbE5hQ2xOYUNsTmFDbA$ruflYSr7JKwcyP4taFgPBJI7nqmwRVvjonthQb2M"
				 "SCL0ow/fg2vyqDTmljA7ecL+mO3o4sE2TAlRA7f3Ju4phw";
	static const char v2[] = "$scrypt$ln=10,r=8,p=1$TmFDbE5hQ2xOYUNsTmFDbA$AughW9OQdIjb8Y7W3yGZXE5EX58i0ciSXZxtEpWJvdU";
	CHECK_INT(verify("password", v1), 0);
	CHECK_INT(verify("passworD", v1), PASSWORD_E_MISMATCH);
	CHECK(password_needs_rehash(v1, LN));   /* p=16, 64-byte hash */
	CHECK_INT(verify("password", v2), 0);
	CHECK_INT(verify("password1", v2), PASSWORD_E_MISMATCH);
	CHECK(!password_needs_rehash(v2, LN));
	CHECK(password_needs_rehash(v2, PASSWORD_DEFAULT_LOG2N));
}

static void test_default_cost(void)
{
	char h[PASSWORD_HASH_SIZE];
	REQUIRE(password_hash(pw, strlen(pw), PASSWORD_DEFAULT_LOG2N, h, sizeof(h)) == 0);
	CHECK_INT(strncmp(h, "$scrypt$ln=15,r=8,p=1$", 22), 0);
	CHECK_INT(verify(pw, h), 0);
	CHECK(!password_needs_rehash(h, PASSWORD_DEFAULT_LOG2N));
	CHECK(password_needs_rehash(h, 16));
}

static void test_fresh_salts(void)
{
	char a[PASSWORD_HASH_SIZE], b[PASSWORD_HASH_SIZE], c[PASSWORD_HASH_SIZE];
	make(a);
	make(b);
	make(c);
	CHECK(strcmp(a, b) != 0);
	CHECK(strcmp(a, c) != 0);
	CHECK(strcmp(b, c) != 0);
	/* Different salts, so different hashes too. */
	CHECK(strncmp(a + 22, b + 22, 22) != 0);
	CHECK(strcmp(a + 45, b + 45) != 0);
	CHECK_INT(verify(pw, a), 0);
	CHECK_INT(verify(pw, b), 0);
	CHECK_INT(verify(pw, c), 0);
}

static void test_bounds_and_args(void)
{
	char h[PASSWORD_HASH_SIZE];
	CHECK_INT(password_hash(pw, strlen(pw), PASSWORD_MIN_LOG2N - 1, h, sizeof(h)), -EINVAL);
	CHECK_INT(password_hash(pw, strlen(pw), PASSWORD_MAX_LOG2N + 1, h, sizeof(h)), -EINVAL);
	CHECK_INT(password_hash(pw, strlen(pw), 0, h, sizeof(h)), -EINVAL);
	CHECK_INT(password_hash(pw, strlen(pw), 64, h, sizeof(h)), -EINVAL);
	CHECK_INT(password_hash(NULL, 3, LN, h, sizeof(h)), -EINVAL);
	CHECK_INT(password_hash(pw, strlen(pw), LN, NULL, 100), -EINVAL);
	/* Output buffer: exactly the size needed works, one less does not. */
	char small[22 + 22 + 1 + 43 + 1];
	CHECK_INT(password_hash(pw, strlen(pw), LN, small, sizeof(small) - 1), -ENOBUFS);
	CHECK_STR(small, "");
	CHECK_INT(password_hash(pw, strlen(pw), LN, small, 0), -ENOBUFS);
	CHECK_INT(password_hash(pw, strlen(pw), LN, small, sizeof(small)), 0);
	CHECK_INT(verify(pw, small), 0);
	/* ln 20 fits the buffer (not run: 1 GiB). */
	CHECK(strlen("$scrypt$ln=20,r=8,p=1$") + 22 + 1 + 43 + 1 <= PASSWORD_HASH_SIZE);

	CHECK_INT(password_verify(pw, strlen(pw), NULL), -EINVAL);
	CHECK_INT(password_verify(NULL, 2, small), -EINVAL);
}

/* ---- tampering and malformed strings --------------------------------------------- */

/* Flip one base64 character of the salt or hash to another valid one: a mismatch. */
static void test_tampered(void)
{
	char h[PASSWORD_HASH_SIZE], t[PASSWORD_HASH_SIZE];
	make(h);
	size_t n = strlen(h);
	/* Characters of the salt and of the hash: the first, every fifth, the last of each (a
	 * KDF run each; valgrind runs this). 'A' (0) and 'Q' (16) differ in a bit that is used
	 * at every position, and both have the unused low bits of a last character clear, so
	 * each change is a well-formed string that does not match. */
	unsigned changed = 0;
	for (size_t i = 22; i < n; i++) {
		if (h[i] == '$' || !(i == 22 || i == 43 || i == 45 || i == n - 1 || i % 5 == 0))
			continue;
		memcpy(t, h, n + 1);
		t[i] = h[i] == 'A' ? 'Q' : 'A';
		int rc = verify(pw, t);
		if (rc != PASSWORD_E_MISMATCH) {
			fprintf(stderr, "position %zu -> %d\n", i, rc);
			CHECK(0);
		}
		changed++;
	}
	CHECK_INT(changed, 16);

	/* Tampered parameters: each one a valid string, none matches. */
	static const char *const params[] = { "ln=11,r=8,p=1", "ln=10,r=7,p=1", "ln=10,r=8,p=2", "ln=12,r=1,p=1" };
	for (size_t i = 0; i < N(params); i++) {
		snprintf(t, sizeof(t), "$scrypt$%s%s", params[i], h + strlen("$scrypt$ln=10,r=8,p=1"));
		CHECK_INT(verify(pw, t), PASSWORD_E_MISMATCH);
	}
	/* Salt and hash swapped between two hashes of the same password. */
	char h2[PASSWORD_HASH_SIZE];
	make(h2);
	memcpy(t, h, 45);
	strcpy(t + 45, h2 + 45);
	CHECK_INT(verify(pw, t), PASSWORD_E_MISMATCH);
}

static void test_malformed(void)
{
	char h[PASSWORD_HASH_SIZE];
	make(h);
	const char *salt = h + 22; /* "<salt>$<hash>" */
	char buf[512];
	static const char *const heads[] = {
		"",
		"$",
		"$scrypt",
		"$scrypt$",
		"$scrypt$ln=10",
		"$scrypt$ln=10,r=8",
		"$scrypt$ln=10,r=8,p=1",
		"scrypt$ln=10,r=8,p=1$",
		"$SCRYPT$ln=10,r=8,p=1$",
		"$scrypt$$ln=10,r=8,p=1$",
		"$scrypt$ln=010,r=8,p=1$",
		"$scrypt$ln=+10,r=8,p=1$",
		"$scrypt$ln=-10,r=8,p=1$",
		"$scrypt$ln= 10,r=8,p=1$",
		"$scrypt$ln=10 ,r=8,p=1$",
		"$scrypt$ln=1e1,r=8,p=1$",
		"$scrypt$ln=0x0a,r=8,p=1$",
		"$scrypt$ln=,r=8,p=1$",
		"$scrypt$ln=10,r=,p=1$",
		"$scrypt$ln=10,r=8,p=$",
		"$scrypt$ln=10,p=1,r=8$",
		"$scrypt$r=8,ln=10,p=1$",
		"$scrypt$ln=10;r=8;p=1$",
		"$scrypt$ln=10,r=8,p=1,x=1$",
		"$scrypt$ln=10,r=08,p=1$",
		"$scrypt$ln=10,r=0,p=1$",
		"$scrypt$ln=10,r=8,p=0$",
		"$scrypt$LN=10,r=8,p=1$",
		"$scrypt$ln=9,r=8,p=1$",            /* below the minimum cost */
		"$scrypt$ln=21,r=8,p=1$",           /* above the maximum: refused before any work */
		"$scrypt$ln=99,r=8,p=1$",
		"$scrypt$ln=100,r=8,p=1$",
		"$scrypt$ln=4294967306,r=8,p=1$",   /* 10 modulo 2^32 */
		"$scrypt$ln=20,r=16,p=1$",          /* cost twice the maximum */
		"$scrypt$ln=20,r=8,p=2$",
		"$scrypt$ln=17,r=16,p=16$",
		"$scrypt$ln=10,r=17,p=1$",
		"$scrypt$ln=10,r=8,p=17$",
		"$scrypt$ln=10,r=99999999999999999999,p=1$",
	};
	for (size_t i = 0; i < N(heads); i++) {
		snprintf(buf, sizeof(buf), "%s%s", heads[i], salt);
		if (verify(pw, buf) != PASSWORD_E_FORMAT) {
			fprintf(stderr, "head %zu: %s\n", i, heads[i]);
			CHECK(0);
		}
		CHECK(password_needs_rehash(buf, LN));
		/* The head alone too. */
		CHECK_INT(verify(pw, heads[i]), PASSWORD_E_FORMAT);
	}

	/* Bodies after a good head. */
	char s22[23], h43[44], a[100][100];
	memcpy(s22, salt, 22);
	s22[22] = '\0';
	memcpy(h43, salt + 23, 43);
	h43[43] = '\0';
	/* a[k]: k 'A's (k + 1 with a final 'B' in b[k]). */
	for (size_t k = 0; k < 100; k++) {
		memset(a[k], 'A', k);
		a[k][k] = '\0';
	}
	char b21[23], b41[43], b42[44];
	memcpy(b21, a[22], sizeof(b21));   /* 22 chars: 16 bytes, unused bits set */
	memcpy(b41, a[42], sizeof(b41));   /* 42 chars: 31 bytes, unused bits set */
	memcpy(b42, a[43], sizeof(b42));   /* 43 chars: 32 bytes, unused bits set */
	b21[21] = b41[41] = b42[42] = 'B';
	const struct {
		const char *salt, *sep, *hash, *tail;
		int want;
	} bodies[] = {
		{ s22, "", h43, "", PASSWORD_E_FORMAT },        /* no separator */
		{ s22, "$$", h43, "", PASSWORD_E_FORMAT },
		{ s22, "$", h43, "$", PASSWORD_E_FORMAT },      /* trailing separator */
		{ s22, "$", h43, "=", PASSWORD_E_FORMAT },      /* padding */
		{ s22, "$", h43, "==", PASSWORD_E_FORMAT },
		{ s22, "$", h43, " ", PASSWORD_E_FORMAT },
		{ s22, "$", h43, "\n", PASSWORD_E_FORMAT },
		{ s22, "$", h43, "\xc3\xa9", PASSWORD_E_FORMAT },
		{ s22, "$", "", "", PASSWORD_E_FORMAT },         /* empty hash */
		{ "", "$", h43, "", PASSWORD_E_FORMAT },         /* empty salt */
		{ a[21], "$", h43, "", PASSWORD_E_FORMAT },      /* 21 chars: a length base64 cannot have */
		{ a[20], "$", h43, "", PASSWORD_E_FORMAT },      /* 15 bytes: under the minimum */
		{ a[25], "$", h43, "", PASSWORD_E_FORMAT },
		{ b21, "$", h43, "", PASSWORD_E_FORMAT },        /* non-canonical */
		{ a[21], "-", h43, "", PASSWORD_E_FORMAT },
		{ "AAAAAAAAAAAAAAAAAAAAA-", "$", h43, "", PASSWORD_E_FORMAT },  /* base64url, not base64 */
		{ "AAAAAAAAAAAAAAAAAAAAA_", "$", h43, "", PASSWORD_E_FORMAT },
		{ "AAAAAAAAAAAAAAAAAAAA==", "$", h43, "", PASSWORD_E_FORMAT },
		{ s22, "$", a[42], "", PASSWORD_E_FORMAT },      /* 31 bytes: under the minimum */
		{ s22, "$", b41, "", PASSWORD_E_FORMAT },
		{ s22, "$", b42, "", PASSWORD_E_FORMAT },        /* non-canonical */
		{ s22, "$", a[43], "", PASSWORD_E_MISMATCH },    /* well-formed, all zero */
		{ s22, "$", h43, "A", PASSWORD_E_MISMATCH },     /* 33 bytes: well-formed, wrong */
		{ a[24], "$", h43, "", PASSWORD_E_MISMATCH },    /* 18-byte salt */
	};
	for (size_t i = 0; i < N(bodies); i++) {
		snprintf(buf, sizeof(buf), "$scrypt$ln=10,r=8,p=1$%s%s%s%s", bodies[i].salt, bodies[i].sep,
			 bodies[i].hash, bodies[i].tail);
		int rc = verify(pw, buf);
		if (rc != bodies[i].want) {
			fprintf(stderr, "body %zu: %s -> %d\n", i, buf, rc);
			CHECK(0);
		}
	}

	/* Salt and hash at their largest (64 bytes) are accepted (and do not match); 65 are not. */
	const char *s64 = a[86], *s65 = a[87];   /* 64 and 65 bytes */
	snprintf(buf, sizeof(buf), "$scrypt$ln=10,r=8,p=1$%s$%s", s64, s64);
	CHECK_INT(verify(pw, buf), PASSWORD_E_MISMATCH);
	CHECK(password_needs_rehash(buf, LN));
	snprintf(buf, sizeof(buf), "$scrypt$ln=10,r=8,p=1$%s$%s", s65, h43);
	CHECK_INT(verify(pw, buf), PASSWORD_E_FORMAT);
	snprintf(buf, sizeof(buf), "$scrypt$ln=10,r=8,p=1$%s$%s", s22, s65);
	CHECK_INT(verify(pw, buf), PASSWORD_E_FORMAT);

	/* A very long string is refused without being read to its end. */
	char *huge = malloc(100000);
	REQUIRE(huge);
	memset(huge, 'A', 99999);
	huge[99999] = '\0';
	memcpy(huge, "$scrypt$ln=10,r=8,p=1$", 22);
	CHECK_INT(verify(pw, huge), PASSWORD_E_FORMAT);
	free(huge);

	/* Every truncation of a good string is malformed (the shortest hash is 32 bytes). */
	size_t n = strlen(h);
	for (size_t k = 0; k < n; k++) {
		memcpy(buf, h, k);
		buf[k] = '\0';
		int rc = verify(pw, buf);
		if (rc != PASSWORD_E_FORMAT) {
			fprintf(stderr, "truncated at %zu -> %d\n", k, rc);
			CHECK(0);
		}
	}
	/* Every single-byte change to the head is malformed or a mismatch, never a match or a
	 * crash. (Not to a digit: ln=20 or r=9, p=9 would be valid and cost up to 1 GiB.) */
	for (size_t i = 0; i < 22; i++) {
		for (int c = 1; c < 256; c++) {
			if (c == (unsigned char)h[i] || (c >= '0' && c <= '9'))
				continue;
			memcpy(buf, h, n + 1);
			buf[i] = (char)c;
			int rc = verify(pw, buf);
			if (rc != PASSWORD_E_FORMAT && rc != PASSWORD_E_MISMATCH) {
				fprintf(stderr, "byte %zu = %d -> %d\n", i, c, rc);
				CHECK(0);
			}
		}
	}
}

static void test_needs_rehash(void)
{
	char h[PASSWORD_HASH_SIZE];
	make(h);
	CHECK(!password_needs_rehash(h, LN));
	CHECK(password_needs_rehash(h, LN + 1));
	CHECK(password_needs_rehash(h, LN - 1));
	CHECK(password_needs_rehash(h, PASSWORD_DEFAULT_LOG2N));
	CHECK(password_needs_rehash("", LN));
	CHECK(password_needs_rehash(NULL, LN));
	char t[PASSWORD_HASH_SIZE];
	snprintf(t, sizeof(t), "$scrypt$ln=10,r=4,p=1%s", h + strlen("$scrypt$ln=10,r=8,p=1"));
	CHECK(password_needs_rehash(t, LN));
	snprintf(t, sizeof(t), "$scrypt$ln=10,r=8,p=2%s", h + strlen("$scrypt$ln=10,r=8,p=1"));
	CHECK(password_needs_rehash(t, LN));
}

/* ---- policy ------------------------------------------------------------------------ */

static void test_policy(void)
{
	char err[200];
	static const struct {
		const char *pw;
		int len; /* -1: strlen */
		const char *msg;
	} cases[] = {
		{ "abcdefghij", -1, "" },
		{ "correct horse battery staple", -1, "" },
		{ "          ", -1, "" },                                              /* spaces are fine */
		{ "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", -1, "" }, /* 10 x e-acute */
		{ "\xf0\x9f\x94\x91\xf0\x9f\x94\x91\xf0\x9f\x94\x91\xf0\x9f\x94\x91\xf0\x9f\x94\x91"
		  "\xf0\x9f\x94\x91\xf0\x9f\x94\x91\xf0\x9f\x94\x91\xf0\x9f\x94\x91\xf0\x9f\x94\x91", -1, "" },
		{ "\xef\xbf\xbf\xf4\x8f\xbf\xbf" "abcdefgh", -1, "" },                  /* U+FFFF, U+10FFFF */
		{ "", -1, "password is too short: at least 10 characters" },
		{ "abcdefghi", -1, "password is too short: at least 10 characters" },
		/* 9 characters in 18 bytes: characters count, not bytes */
		{ "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", -1,
		  "password is too short: at least 10 characters" },
		{ "abcde\tfghij", -1,
		  "password contains a control character (character 6); tabs, line breaks and other control "
		  "characters are not allowed" },
		{ "abcdefghij\n", -1,
		  "password contains a control character (character 11); tabs, line breaks and other control "
		  "characters are not allowed" },
		{ "\x7f" "abcdefghij", -1,
		  "password contains a control character (character 1); tabs, line breaks and other control "
		  "characters are not allowed" },
		{ "\xc3\xa9\xc2\x85" "abcdefghij", -1,   /* U+0085 (NEL), a C1 control */
		  "password contains a control character (character 2); tabs, line breaks and other control "
		  "characters are not allowed" },
		{ "abc\0defghijk", 12,
		  "password contains a control character (character 4); tabs, line breaks and other control "
		  "characters are not allowed" },
		{ "abcdefghij\xff", -1, "password is not valid UTF-8 (at byte 11)" },
		{ "abcdefghij\x80", -1, "password is not valid UTF-8 (at byte 11)" },
		{ "ab\xc3", -1, "password is not valid UTF-8 (at byte 3)" },              /* truncated */
		{ "ab\xc3(defghijkl", -1, "password is not valid UTF-8 (at byte 3)" },
		{ "\xc0\xaf" "abcdefghij", -1, "password is not valid UTF-8 (at byte 1)" }, /* overlong '/' */
		{ "\xc1\xbf" "abcdefghij", -1, "password is not valid UTF-8 (at byte 1)" },
		{ "\xe0\x80\xaf" "abcdefghij", -1, "password is not valid UTF-8 (at byte 1)" },
		{ "\xf0\x80\x80\xaf" "abcdefghij", -1, "password is not valid UTF-8 (at byte 1)" },
		{ "abcdefghij\xed\xa0\x80", -1, "password is not valid UTF-8 (at byte 11)" }, /* surrogate */
		{ "abcdefghij\xf4\x90\x80\x80", -1, "password is not valid UTF-8 (at byte 11)" }, /* > U+10FFFF */
		{ "abcdefghij\xf5\x80\x80\x80", -1, "password is not valid UTF-8 (at byte 11)" },
		{ "abcdefghij\xe2\x82", -1, "password is not valid UTF-8 (at byte 11)" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		size_t len = cases[i].len < 0 ? strlen(cases[i].pw) : (size_t)cases[i].len;
		memset(err, 'x', sizeof(err));
		int rc = password_check_policy(cases[i].pw, len, err, sizeof(err));
		CHECK_INT(rc, cases[i].msg[0] ? PASSWORD_E_POLICY : 0);
		if (strcmp(err, cases[i].msg) != 0) {
			fprintf(stderr, "case %zu\n", i);
			CHECK_STR(err, cases[i].msg);
		}
	}

	/* Length: 1024 bytes pass, 1025 do not; the message never holds the password. */
	char *big = malloc(PASSWORD_MAX_BYTES + 1);
	REQUIRE(big);
	memset(big, 'z', PASSWORD_MAX_BYTES + 1);
	CHECK_INT(password_check_policy(big, PASSWORD_MAX_BYTES, err, sizeof(err)), 0);
	CHECK_INT(password_check_policy(big, PASSWORD_MAX_BYTES + 1, err, sizeof(err)), PASSWORD_E_POLICY);
	CHECK_STR(err, "password is too long: at most 1024 bytes");
	free(big);

	static const char secret[] = "Sup3rSecret\x01";
	CHECK_INT(password_check_policy(secret, strlen(secret), err, sizeof(err)), PASSWORD_E_POLICY);
	CHECK(strstr(err, "Sup3r") == NULL);
	CHECK(strstr(err, "control character") != NULL);

	/* err optional, and cut to its size. */
	CHECK_INT(password_check_policy("short", 5, NULL, 0), PASSWORD_E_POLICY);
	CHECK_INT(password_check_policy("short", 5, err, 0), PASSWORD_E_POLICY);
	CHECK_INT(password_check_policy("short", 5, err, 9), PASSWORD_E_POLICY);
	CHECK_STR(err, "password");
	CHECK_INT(password_check_policy(NULL, 0, err, sizeof(err)), PASSWORD_E_POLICY);
	CHECK_INT(password_check_policy(NULL, 1, err, sizeof(err)), -EINVAL);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_round_trip),
		HARNESS_TEST(test_known_answer),
		HARNESS_TEST(test_default_cost),
		HARNESS_TEST(test_fresh_salts),
		HARNESS_TEST(test_bounds_and_args),
		HARNESS_TEST(test_tampered),
		HARNESS_TEST(test_malformed),
		HARNESS_TEST(test_needs_rehash),
		HARNESS_TEST(test_policy),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
