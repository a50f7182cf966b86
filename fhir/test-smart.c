/*
 * Tests for fhir/smart: client assertions signed with freshly generated
 * RSA-2048 and EC P-384 keys are split and VERIFIED with the public key
 * (ES384's r||s turned back into DER), their claims checked; keys loaded
 * from PEM files (PKCS#8 and traditional) and refused for the wrong alg;
 * the token form and the token answer parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "fhir/fhir.h"
#include "fhir/smart.h"
#include "tests/harness.h"

static EVP_PKEY *rsa2048, *ec384;

static EVP_PKEY *keys(fhir_smart_alg alg)
{
	if (!rsa2048)
		rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (!ec384)
		ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (!rsa2048 || !ec384)
		abort();
	return alg == FHIR_SMART_RS384 ? rsa2048 : ec384;
}

/* base64url (no padding) decoder for the test; NULL on a bad character. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
	unsigned char *out = malloc(n * 3 / 4 + 3);
	unsigned acc = 0, bits = 0;
	size_t o = 0;

	if (!out)
		abort();
	for (size_t i = 0; i < n; i++) {
		const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
		const char *p = s[i] ? strchr(alpha, s[i]) : NULL;
		if (!p) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned)(p - alpha);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*out_len = o;
	return out;
}

static json_t *b64_json(const char *s, size_t n)
{
	size_t len;
	unsigned char *d = b64url_decode(s, n, &len);
	json_error_t jerr;
	json_t *j = d ? json_loadb((const char *)d, len, 0, &jerr) : NULL;
	free(d);
	return j;
}

/* Verify the JWS signature of jwt with key's public half. */
static int verify_jwt(const char *jwt, EVP_PKEY *key, fhir_smart_alg alg)
{
	const char *dot2 = strrchr(jwt, '.');
	size_t sig_len;
	unsigned char *sig = b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig_len);
	unsigned char *der = NULL;
	int ok = 0;

	if (!sig)
		return 0;
	if (alg == FHIR_SMART_ES384) {
		/* JOSE r||s (48 + 48 bytes) back to an ECDSA-Sig-Value. */
		if (sig_len != 96)
			goto done;
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r = BN_bin2bn(sig, 48, NULL), *s = BN_bin2bn(sig + 48, 48, NULL);
		if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s))
			abort();
		int der_len = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (der_len <= 0)
			goto done;
		free(sig);
		sig = malloc((size_t)der_len);
		memcpy(sig, der, (size_t)der_len);
		sig_len = (size_t)der_len;
	} else if (sig_len != 256) {
		goto done;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha384(), NULL, key) == 1 &&
	     EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)jwt, (size_t)(dot2 - jwt)) == 1;
	EVP_MD_CTX_free(ctx);
done:
	OPENSSL_free(der);
	free(sig);
	ERR_clear_error();
	return ok;
}

static int is_hex32(const char *s)
{
	if (!s || strlen(s) != 32)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static void check_assertion(fhir_smart_alg alg, const char *alg_name)
{
	EVP_PKEY *key = keys(alg);
	const char *url = "https://ehr.example/oauth2/token?x=\"q\"";
	char err[256] = "";
	char *jwt = fhir_smart_assertion(key, alg, "key-1", "client/\xc3\xa9", url, 1700000000, 300, err, sizeof(err));

	REQUIRE(jwt);
	const char *dot1 = strchr(jwt, '.'), *dot2 = strrchr(jwt, '.');
	REQUIRE(dot1 && dot2 && dot1 < dot2);
	CHECK(verify_jwt(jwt, key, alg));

	/* Tampering with the claims breaks the signature. */
	char *bad = strdup(jwt);
	bad[dot1 - jwt + 3] = bad[dot1 - jwt + 3] == 'A' ? 'B' : 'A';
	CHECK(!verify_jwt(bad, key, alg));
	free(bad);

	json_t *h = b64_json(jwt, (size_t)(dot1 - jwt));
	json_t *c = b64_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	REQUIRE(h && c);
	CHECK_STR(json_string_value(json_object_get(h, "alg")), alg_name);
	CHECK_STR(json_string_value(json_object_get(h, "typ")), "JWT");
	CHECK_STR(json_string_value(json_object_get(h, "kid")), "key-1");
	CHECK_STR(json_string_value(json_object_get(c, "iss")), "client/\xc3\xa9");
	CHECK_STR(json_string_value(json_object_get(c, "sub")), "client/\xc3\xa9");
	CHECK_STR(json_string_value(json_object_get(c, "aud")), url);
	CHECK_INT(json_integer_value(json_object_get(c, "iat")), 1700000000);
	CHECK_INT(json_integer_value(json_object_get(c, "exp")), 1700000300);
	CHECK(is_hex32(json_string_value(json_object_get(c, "jti"))));
	CHECK_INT(json_object_size(c), 6);

	/* Another assertion: a new jti, the lifetime clamped to 300 s. */
	char *jwt2 = fhir_smart_assertion(key, alg, "key-1", "c", url, 1700000000, 3600, err, sizeof(err));
	REQUIRE(jwt2);
	const char *d1 = strchr(jwt2, '.'), *d2 = strrchr(jwt2, '.');
	json_t *c2 = b64_json(d1 + 1, (size_t)(d2 - d1 - 1));
	REQUIRE(c2);
	CHECK(strcmp(json_string_value(json_object_get(c, "jti")), json_string_value(json_object_get(c2, "jti"))) != 0);
	CHECK_INT(json_integer_value(json_object_get(c2, "exp")), 1700000300);
	CHECK(verify_jwt(jwt2, key, alg));
	json_decref(c2);
	free(jwt2);

	/* ... and at least 1 s. */
	jwt2 = fhir_smart_assertion(key, alg, NULL, "c", url, 1700000000, 0, err, sizeof(err));
	REQUIRE(jwt2);
	d1 = strchr(jwt2, '.');
	d2 = strrchr(jwt2, '.');
	json_t *h2 = b64_json(jwt2, (size_t)(d1 - jwt2));
	c2 = b64_json(d1 + 1, (size_t)(d2 - d1 - 1));
	REQUIRE(h2 && c2);
	CHECK_INT(json_integer_value(json_object_get(c2, "exp")), 1700000001);
	CHECK(json_object_get(h2, "kid") == NULL);
	json_decref(h2);
	json_decref(c2);
	free(jwt2);

	json_decref(h);
	json_decref(c);
	free(jwt);
}

static void test_assertion_rs384(void)
{
	check_assertion(FHIR_SMART_RS384, "RS384");
}

static void test_assertion_es384(void)
{
	check_assertion(FHIR_SMART_ES384, "ES384");
}

static void test_assertion_errors(void)
{
	char err[256] = "";

	CHECK(fhir_smart_assertion(keys(FHIR_SMART_RS384), FHIR_SMART_ES384, "k", "c", "u", 1, 60, err,
				   sizeof(err)) == NULL);
	CHECK(strstr(err, "ES384 needs an EC P-384 key, found a RSA key") != NULL);
	CHECK(fhir_smart_assertion(keys(FHIR_SMART_ES384), FHIR_SMART_RS384, "k", "c", "u", 1, 60, err,
				   sizeof(err)) == NULL);
	CHECK(strstr(err, "RS384 needs an RSA key, found a EC key") != NULL);
	CHECK(fhir_smart_assertion(keys(FHIR_SMART_ES384), FHIR_SMART_ES384, "k", NULL, "u", 1, 60, err,
				   sizeof(err)) == NULL);
	CHECK(fhir_smart_assertion(NULL, FHIR_SMART_ES384, "k", "c", "u", 1, 60, err, sizeof(err)) == NULL);
	CHECK(fhir_smart_assertion(keys(FHIR_SMART_ES384), FHIR_SMART_ES384, "k", "c\xff", "u", 1, 60, err,
				   sizeof(err)) == NULL);
	CHECK(strstr(err, "not valid UTF-8") != NULL);
}

static char *write_file(const char *dir, const char *name, void (*fn)(FILE *, void *), void *arg)
{
	char *path;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fn(f, arg);
	fclose(f);
	return path;
}

static void pem_pkcs8(FILE *f, void *k)
{
	if (!PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))
		abort();
}

static void pem_traditional(FILE *f, void *k)
{
	BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
	if (!b || !PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL))
		abort();
	BIO_free(b);
}

static void pem_encrypted(FILE *f, void *k)
{
	if (!PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), (const unsigned char *)"secret", 6, NULL, NULL))
		abort();
}

static void pem_public(FILE *f, void *k)
{
	if (!PEM_write_PUBKEY(f, k))
		abort();
}

static void garbage(FILE *f, void *arg)
{
	fputs("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", f);
}

struct load_case {
	const char *file;
	fhir_smart_alg alg;
	int ok;
	const char *err;  /* substring */
};

static void test_load_key(void)
{
	char *dir = harness_tmpdir();
	EVP_PKEY *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	REQUIRE(dir && rsa1024 && ec256);
	char *files[] = {
		write_file(dir, "rsa-pkcs8.pem", pem_pkcs8, keys(FHIR_SMART_RS384)),
		write_file(dir, "rsa-trad.pem", pem_traditional, keys(FHIR_SMART_RS384)),
		write_file(dir, "ec-pkcs8.pem", pem_pkcs8, keys(FHIR_SMART_ES384)),
		write_file(dir, "ec-trad.pem", pem_traditional, keys(FHIR_SMART_ES384)),
		write_file(dir, "rsa1024.pem", pem_pkcs8, rsa1024),
		write_file(dir, "ec256.pem", pem_traditional, ec256),
		write_file(dir, "enc.pem", pem_encrypted, keys(FHIR_SMART_ES384)),
		write_file(dir, "pub.pem", pem_public, keys(FHIR_SMART_RS384)),
		write_file(dir, "garbage.pem", garbage, NULL),
	};
	static const struct load_case cases[] = {
		{ "rsa-pkcs8.pem", FHIR_SMART_RS384, 1, NULL },
		{ "rsa-trad.pem", FHIR_SMART_RS384, 1, NULL },
		{ "ec-pkcs8.pem", FHIR_SMART_ES384, 1, NULL },
		{ "ec-trad.pem", FHIR_SMART_ES384, 1, NULL },
		{ "rsa-pkcs8.pem", FHIR_SMART_ES384, 0, "ES384 needs an EC P-384 key, found a RSA key" },
		{ "ec-pkcs8.pem", FHIR_SMART_RS384, 0, "RS384 needs an RSA key, found a EC key" },
		{ "rsa1024.pem", FHIR_SMART_RS384, 0, "RS384 needs an RSA key of at least 2048 bits, found 1024 bits" },
		{ "ec256.pem", FHIR_SMART_ES384, 0, "ES384 needs an EC key on P-384 (secp384r1), found prime256v1" },
		{ "enc.pem", FHIR_SMART_ES384, 0, "the private key is encrypted; passphrases are not supported" },
		{ "pub.pem", FHIR_SMART_RS384, 0, "no PEM private key found" },
		{ "garbage.pem", FHIR_SMART_RS384, 0, "no PEM private key found" },
		{ "missing.pem", FHIR_SMART_RS384, 0, "cannot open private key" },
		{ "rsa-pkcs8.pem", (fhir_smart_alg)0, 0, "unknown signing algorithm" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[4096], err[512] = "";
		snprintf(path, sizeof(path), "%s/%s", dir, cases[i].file);
		EVP_PKEY *k = fhir_smart_load_key(path, cases[i].alg, err, sizeof(err));
		if (!!k != cases[i].ok || (cases[i].err && !strstr(err, cases[i].err))) {
			fprintf(stderr, "  case %zu (%s): %s \"%s\"\n", i, cases[i].file, k ? "loaded" : "refused", err);
			harness_failures++;
		}
		if (k) {
			/* The loaded key signs assertions that verify with the original. */
			char *jwt = fhir_smart_assertion(k, cases[i].alg, "k", "c", "u", 1, 60, err, sizeof(err));
			CHECK(jwt && verify_jwt(jwt, keys(cases[i].alg), cases[i].alg));
			free(jwt);
		}
		EVP_PKEY_free(k);
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		unlink(files[i]);
		free(files[i]);
	}
	rmdir(dir);
	free(dir);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(ec256);
}

static void test_alg_parse_and_base64url(void)
{
	CHECK_INT(fhir_smart_alg_parse("RS384"), FHIR_SMART_RS384);
	CHECK_INT(fhir_smart_alg_parse("ES384"), FHIR_SMART_ES384);
	CHECK_INT(fhir_smart_alg_parse("rs384"), 0);
	CHECK_INT(fhir_smart_alg_parse("RS256"), 0);
	CHECK_INT(fhir_smart_alg_parse(NULL), 0);

	/* RFC 4648 section 10 vectors, in the url alphabet without padding. */
	static const char *const in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const out[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
	for (size_t i = 0; i < 7; i++) {
		char *b = fhir_base64url((const unsigned char *)in[i], strlen(in[i]));
		CHECK_STR(b, out[i]);
		free(b);
	}
	const unsigned char bin[] = { 0xfb, 0xff, 0xbf, 0x3e };
	char *b = fhir_base64url(bin, sizeof(bin));
	CHECK_STR(b, "-_-_Pg");
	free(b);
}

static void test_token_form(void)
{
	char *f = fhir_smart_token_form("aaa.bbb.c-_", "system/*.read system/Patient.rs");
	CHECK_STR(f, "grant_type=client_credentials&scope=system%2F%2A.read+system%2FPatient.rs"
		     "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
		     "&client_assertion=aaa.bbb.c-_");
	free(f);
	f = fhir_smart_token_form("x.y.z", NULL);
	CHECK_STR(f, "grant_type=client_credentials"
		     "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
		     "&client_assertion=x.y.z");
	free(f);
	f = fhir_smart_token_form("x.y.z", "a&b=c");
	CHECK(f && strstr(f, "&scope=a%26b%3Dc&"));
	free(f);
	CHECK(fhir_smart_token_form(NULL, "s") == NULL);
}

struct token_case {
	const char *body;
	int rc;
	const char *token;
	long expires_in;
	const char *err;
};

static void test_token_parse(void)
{
	static const struct token_case cases[] = {
		{ "{\"access_token\":\"tok-1\",\"token_type\":\"bearer\",\"expires_in\":3600,\"scope\":\"s\"}", 0,
		  "tok-1", 3600, "" },
		{ "{\"access_token\":\"tok-2\",\"token_type\":\"Bearer\"}", 0, "tok-2", 300, "" },
		{ "{\"access_token\":\"tok-3\",\"expires_in\":59.9}", 0, "tok-3", 59, "" },
		{ "{\"access_token\":\"tok-4\",\"expires_in\":-5}", 0, "tok-4", 300, "" },
		{ "{\"error\":\"invalid_client\",\"error_description\":\"bad\\nsignature\"}", FHIR_E_SHAPE, NULL, 0,
		  "invalid_client: bad?signature" },
		{ "{\"error\":\"invalid_scope\"}", FHIR_E_SHAPE, NULL, 0, "invalid_scope" },
		{ "{\"access_token\":\"secret-token\",\"error\":\"x\"}", FHIR_E_SHAPE, NULL, 0, "x" },
		{ "{\"token_type\":\"bearer\"}", FHIR_E_SHAPE, NULL, 0, "no access_token in the token answer" },
		{ "{\"access_token\":\"\"}", FHIR_E_SHAPE, NULL, 0, "no access_token in the token answer" },
		{ "{\"access_token\":\"secret-token\",\"token_type\":\"DPoP\"}", FHIR_E_SHAPE, NULL, 0,
		  "the token answer has token_type \"DPoP\", not bearer" },
		{ "[1]", FHIR_E_SHAPE, NULL, 0, "the token answer is not a JSON object" },
		{ "<html>502</html>", FHIR_E_JSON, NULL, 0, "the token answer is not JSON" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *token = (char *)"junk", err[128];
		long exp = 0;
		int rc = fhir_smart_token_parse(cases[i].body, strlen(cases[i].body), &token, &exp, err, sizeof(err));
		if (rc != cases[i].rc || strcmp(err, cases[i].err) != 0 ||
		    (cases[i].token ? !token || strcmp(token, cases[i].token) != 0 : token != NULL) ||
		    (rc == 0 && exp != cases[i].expires_in)) {
			fprintf(stderr, "  case %zu: rc %d token %s exp %ld err \"%s\"\n", i, rc, token ? token : "NULL",
				exp, err);
			harness_failures++;
		}
		CHECK(strstr(err, "secret-token") == NULL);
		free(token);
	}
}

static void free_keys(void)
{
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(ec384);
	rsa2048 = ec384 = NULL;
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_assertion_rs384),
		HARNESS_TEST(test_assertion_es384),
		HARNESS_TEST(test_assertion_errors),
		HARNESS_TEST(test_load_key),
		HARNESS_TEST(test_alg_parse_and_base64url),
		HARNESS_TEST(test_token_form),
		HARNESS_TEST(test_token_parse),
	};
	int r = harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	free_keys();
	return r;
}
