/*
 * password — the clinicians' passwords: scrypt hashing (OpenSSL 3 EVP_KDF
 * "SCRYPT"), verification in constant time, and the password policy.
 *
 * Stored format (self-describing, in the style of the PHC string format):
 *
 *     $scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>
 *
 * e.g. "$scrypt$ln=15,r=8,p=1$" + 22 + "$" + 43 characters (88 in all).
 * The numbers are decimal without leading zeros; salt and hash are base64
 * (standard alphabet A-Z a-z 0-9 + /) without '=' padding and with the
 * unused low bits of the last character zero (so each value has exactly
 * one spelling). password_hash() writes r=8, p=1, a 16-byte random salt and
 * a 32-byte hash. password_verify() takes the parameters from the string,
 * within bounds that keep a tampered or foreign string from costing more
 * than the dearest hash we write (a denial of service): ln 10..20, r and p
 * 1..16 with r * p * 2^ln <= 8 * 2^20 (1 GiB of scrypt memory at most),
 * salt 16..64 bytes, hash 32..64 bytes. Anything else is PASSWORD_E_FORMAT.
 *
 * Cost: memory is 128 * r * 2^ln bytes: 32 MiB at the default ln=15 (about
 * 0.1 s), 1 GiB at ln=20.
 *
 * Return convention: 0 ok; negative errno (-EINVAL bad arguments, -ENOBUFS
 * output too small, -EIO an OpenSSL failure: no randomness, or the KDF
 * refused, e.g. out of memory); positive PASSWORD_E_* for the caller to
 * handle. Intermediate buffers are wiped; nothing here logs, and no message
 * contains the password.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_DEFAULT_LOG2N 15
#define PASSWORD_MIN_LOG2N 10
#define PASSWORD_MAX_LOG2N 20
#define PASSWORD_MIN_CHARS 10      /* Unicode code points */
#define PASSWORD_MAX_BYTES 1024    /* UTF-8 bytes */
#define PASSWORD_HASH_SIZE 128     /* a buffer that holds any string password_hash() writes, NUL included */

enum {
	PASSWORD_E_MISMATCH = 1,   /* wrong password */
	PASSWORD_E_FORMAT,         /* the stored string is malformed or out of bounds */
	PASSWORD_E_POLICY,         /* the password breaks the policy (err says how) */
};

/*
 * Hash len bytes of password (any bytes; the policy is separate) with a
 * fresh random salt at cost log2n (PASSWORD_MIN_LOG2N..PASSWORD_MAX_LOG2N),
 * writing the NUL-terminated stored string to out. 0; -EINVAL (NULL out,
 * NULL password with len > 0, len > PASSWORD_MAX_BYTES, log2n out of
 * bounds); -ENOBUFS (out_size too small: PASSWORD_HASH_SIZE always
 * suffices); -EIO. On failure out holds "" (when out_size > 0).
 */
int password_hash(const char *password, size_t len, unsigned log2n, char *out, size_t out_size);

/*
 * Check len bytes of password against a stored string. 0 on a match;
 * PASSWORD_E_MISMATCH (also for a password longer than PASSWORD_MAX_BYTES,
 * which no stored string can match); PASSWORD_E_FORMAT (checked first, with
 * no KDF run); -EINVAL (NULL stored, NULL password with len > 0); -EIO. The
 * hashes are compared in constant time.
 */
int password_verify(const char *password, size_t len, const char *stored);

/*
 * The policy for a new password: valid UTF-8 (no overlong forms, no
 * surrogates), no control characters (U+0000-U+001F, U+007F-U+009F: tab and
 * newline included), at least PASSWORD_MIN_CHARS code points and at most
 * PASSWORD_MAX_BYTES bytes. 0, or PASSWORD_E_POLICY with the reason in err
 * (may be NULL), e.g. "password is too short: at least 10 characters";
 * positions are given as numbers, never the password's content. -EINVAL
 * for a NULL password with len > 0.
 */
int password_check_policy(const char *password, size_t len, char *err, size_t err_size);

/*
 * Should the stored string be replaced at the next successful login? True
 * when it is malformed or differs from what password_hash(..., log2n, ...)
 * would write now (ln, r=8, p=1, 16-byte salt, 32-byte hash).
 */
bool password_needs_rehash(const char *stored, unsigned log2n);
