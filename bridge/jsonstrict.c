/*
 * jsonstrict: the strict JSON loaders' common part (see jsonstrict.h).
 */
#include "bridge/jsonstrict.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void jsonstrict_errf(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	if (!err || err_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
}

/* ---- the file ------------------------------------------------------------- */

int jsonstrict_file_open(const char *path, struct stat *st, char *err, size_t err_size)
{
	/* O_NONBLOCK: a FIFO planted at path must not hang us before fstat. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		jsonstrict_errf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st) != 0) {
		jsonstrict_errf(err, err_size, "%s: cannot stat: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		jsonstrict_errf(err, err_size, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	return fd;
}

int jsonstrict_file_read(int fd, const char *path, char *buf, size_t cap, size_t *n, char *err, size_t err_size)
{
	*n = 0;
	while (*n < cap) {
		ssize_t r = read(fd, buf + *n, cap - *n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			jsonstrict_errf(err, err_size, "%s: cannot read: %s", path, strerror(errno));
			return -1;
		}
		if (r == 0)
			break;
		*n += (size_t)r;
	}
	return 0;
}

/* Read a whole file of at most max bytes; *out is NUL-terminated. */
static int read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t err_size)
{
	struct stat st;
	char *buf;
	size_t n;
	int fd;

	fd = jsonstrict_file_open(path, &st, err, err_size);
	if (fd < 0)
		return JSONSTRICT_E_FILE;
	if (st.st_size < 0 || (uintmax_t)st.st_size > max) {
		jsonstrict_errf(err, err_size, "%s: larger than %zu bytes", path, max);
		close(fd);
		return JSONSTRICT_E_FILE;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		jsonstrict_errf(err, err_size, "%s: out of memory", path);
		return -ENOMEM;
	}
	/* Read what fstat promised and one byte more: a file that grew meanwhile is refused. */
	if (jsonstrict_file_read(fd, path, buf, (size_t)st.st_size + 1, &n, err, err_size) != 0)
		goto fail;
	if (n > (size_t)st.st_size) {
		jsonstrict_errf(err, err_size, "%s: changed while being read", path);
		goto fail;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	close(fd);
	return JSONSTRICT_E_FILE;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup("");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

int jsonstrict_read(jsonstrict *x, size_t max, char **text)
{
	int r;

	*text = NULL;
	r = read_file(x->file, max, text, &x->len, x->err, x->err_size);
	if (r)
		return r;
	x->text = *text;
	x->dir = dir_of(x->file);
	if (!x->dir) {
		jsonstrict_errf(x->err, x->err_size, "%s: out of memory", x->file);
		return -ENOMEM;
	}
	return 0;
}

int jsonstrict_parse(jsonstrict *x, json_t **root)
{
	json_error_t jerr;

	*root = json_loadb(x->text, x->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!*root) {
		jsonstrict_errf(x->err, x->err_size, "%s:%d:%d: %s", x->file, jerr.line, jerr.column, jerr.text);
		return x->fail_code;
	}
	if (!json_is_object(*root))
		return jsonstrict_fail_here(x, "expected an object, got %s", jsonstrict_kind(*root));
	return 0;
}

void jsonstrict_deinit(jsonstrict *x)
{
	free(x->dir);
	x->dir = NULL;
}

char *jsonstrict_resolve(const jsonstrict *x, const char *file)
{
	char *path = NULL;

	if (file[0] == '/' || !x->dir || !x->dir[0])
		return strdup(file);
	if (asprintf(&path, "%s%s%s", x->dir, x->dir[strlen(x->dir) - 1] == '/' ? "" : "/", file) < 0)
		return NULL;
	return path;
}

/* ---- the key path --------------------------------------------------------- */

void jsonstrict_push_key(jsonstrict *x, const char *key)
{
	if (x->depth < JSONSTRICT_DEPTH)
		x->path[x->depth++] = (jsonloc_step)JSONLOC_KEY(key);
}

void jsonstrict_push_index(jsonstrict *x, size_t i)
{
	if (x->depth < JSONSTRICT_DEPTH)
		x->path[x->depth++] = (jsonloc_step)JSONLOC_INDEX(i);
}

void jsonstrict_pop(jsonstrict *x)
{
	if (x->depth > 0)
		x->depth--;
}

const jsonloc_pos *jsonstrict_locate(const jsonstrict *x, size_t n, bool value, jsonloc_pos *buf)
{
	jsonloc_pos name, val;

	if (n > x->depth)
		n = x->depth;
	if (jsonloc_find(x->text, x->len, x->path, n, &name, &val) != 0)
		return NULL;
	*buf = value ? val : name;
	return buf;
}

/* ---- errors --------------------------------------------------------------- */

static int vfail_at(jsonstrict *x, const jsonloc_pos *at, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static int vfail_at(jsonstrict *x, const jsonloc_pos *at, const char *fmt, va_list ap)
{
	char *p;
	int n;

	if (!x->err || x->err_size == 0)
		return x->fail_code;
	p = jsonloc_path_str(x->path, x->depth);
	if (at)
		n = snprintf(x->err, x->err_size, "%s:%lu:%lu: %s: ", x->file, at->line, at->column, p ? p : "?");
	else
		n = snprintf(x->err, x->err_size, "%s: %s: ", x->file, p ? p : "?");
	free(p);
	if (n >= 0 && (size_t)n < x->err_size)
		vsnprintf(x->err + n, x->err_size - (size_t)n, fmt, ap);
	return x->fail_code;
}

int jsonstrict_fail_at(jsonstrict *x, const jsonloc_pos *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_at(x, at, fmt, ap);
	va_end(ap);
	return x->fail_code;
}

int jsonstrict_fail_here(jsonstrict *x, const char *fmt, ...)
{
	jsonloc_pos buf;
	va_list ap;

	va_start(ap, fmt);
	vfail_at(x, jsonstrict_locate(x, x->depth, false, &buf), fmt, ap);
	va_end(ap);
	return x->fail_code;
}

int jsonstrict_fail_key(jsonstrict *x, const char *key, const char *fmt, ...)
{
	jsonloc_pos buf;
	va_list ap;

	jsonstrict_push_key(x, key);
	va_start(ap, fmt);
	vfail_at(x, jsonstrict_locate(x, x->depth, false, &buf), fmt, ap);
	va_end(ap);
	jsonstrict_pop(x);
	return x->fail_code;
}

int jsonstrict_fail_missing(jsonstrict *x, const char *key, const char *fmt, ...)
{
	jsonloc_pos buf;
	va_list ap;

	jsonstrict_push_key(x, key);
	va_start(ap, fmt);
	vfail_at(x, jsonstrict_locate(x, x->depth - 1, true, &buf), fmt, ap);
	va_end(ap);
	jsonstrict_pop(x);
	return x->fail_code;
}

const char *jsonstrict_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE: return "true";
	case JSON_FALSE: return "false";
	case JSON_NULL: return "null";
	}
	return "an unknown value";
}

const char *jsonstrict_show(const char *s, char *out, size_t size)
{
	size_t o = 0;
	const size_t room = size - 5; /* quote, "...", quote, NUL */

	out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		size_t n;
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			n = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p);
		} else {
			esc[0] = (char)*p;
			n = 1;
		}
		if (o + n > room) {
			/* Do not end inside a UTF-8 sequence. */
			while (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
				o--;
			if (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
				o--;
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

/* ---- object shape and typed members ------------------------------------------ */

bool jsonstrict_has_control(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

static bool name_in(const char *key, const char *const *names)
{
	for (size_t i = 0; names[i]; i++)
		if (strcmp(key, names[i]) == 0)
			return true;
	return false;
}

void jsonstrict_names_join(const char *const *names, char *out, size_t size)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; names[i]; i++) {
		int n = snprintf(out + o, size - o, "%s%s", i ? ", " : "", names[i]);
		if (n < 0 || (size_t)n >= size - o)
			return;
		o += (size_t)n;
	}
}

int jsonstrict_check_keys(jsonstrict *x, const json_t *obj, const char *const *allowed, const char *const *other,
			  const char *other_why)
{
	const char *key;
	json_t *v;
	char list[512];

	json_object_foreach((json_t *)obj, key, v) {
		if (name_in(key, allowed))
			continue;
		if (other && name_in(key, other))
			return jsonstrict_fail_key(x, key, "%s", other_why);
		jsonstrict_names_join(allowed, list, sizeof(list));
		return jsonstrict_fail_key(x, key, "unknown key (allowed: %s)", list);
	}
	return 0;
}

int jsonstrict_get_object(jsonstrict *x, const json_t *parent, const char *key, bool required, json_t **out)
{
	json_t *v = json_object_get(parent, key);

	*out = NULL;
	if (!v)
		return required ? jsonstrict_fail_missing(x, key, "required key is missing") : 0;
	if (!json_is_object(v))
		return jsonstrict_fail_key(x, key, "expected an object, got %s", jsonstrict_kind(v));
	*out = v;
	return 0;
}

int jsonstrict_get_str(jsonstrict *x, const json_t *parent, const char *key, bool required, const char *what,
		       const char **out)
{
	json_t *v = json_object_get(parent, key);

	*out = NULL;
	if (!v)
		return required ? jsonstrict_fail_missing(x, key, "required key is missing") : 0;
	if (!json_is_string(v))
		return jsonstrict_fail_key(x, key, "expected %s, got %s", what, jsonstrict_kind(v));
	if (json_string_length(v) == 0)
		return jsonstrict_fail_key(x, key, "expected %s, got an empty string", what);
	if (jsonstrict_has_control(json_string_value(v), json_string_length(v)))
		return jsonstrict_fail_key(x, key, "must not contain control characters");
	*out = json_string_value(v);
	return 0;
}

int jsonstrict_get_word(jsonstrict *x, const json_t *parent, const char *key, bool required,
			const char *const *words, int *index)
{
	json_t *v = json_object_get(parent, key);
	char list[256], shown[96];
	size_t o = 0;

	*index = -1;
	if (!v)
		return required ? jsonstrict_fail_missing(x, key, "required key is missing") : 0;
	/* "a", "a" or "b", "a", "b" or "c" */
	list[0] = '\0';
	for (size_t i = 0; words[i]; i++) {
		int n = snprintf(list + o, sizeof(list) - o, "%s\"%s\"", i == 0 ? "" : words[i + 1] ? ", " : " or ",
				 words[i]);
		if (n < 0 || (size_t)n >= sizeof(list) - o)
			break;
		o += (size_t)n;
	}
	if (!json_is_string(v))
		return jsonstrict_fail_key(x, key, "expected %s, got %s", list, jsonstrict_kind(v));
	for (size_t i = 0; words[i]; i++) {
		if (strcmp(json_string_value(v), words[i]) == 0) {
			*index = (int)i;
			return 0;
		}
	}
	return jsonstrict_fail_key(x, key, "expected %s, got %s", list,
				   jsonstrict_show(json_string_value(v), shown, sizeof(shown)));
}

int jsonstrict_get_uint(jsonstrict *x, const json_t *parent, const char *key, unsigned min, unsigned max, unsigned def,
			unsigned *out)
{
	json_t *v = json_object_get(parent, key);

	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return jsonstrict_fail_key(x, key, "expected an integer from %u to %u, got %s", min, max,
					   jsonstrict_kind(v));
	json_int_t n = json_integer_value(v);
	if (n < (json_int_t)min || n > (json_int_t)max)
		return jsonstrict_fail_key(x, key, "expected an integer from %u to %u, got %" JSON_INTEGER_FORMAT, min,
					   max, n);
	*out = (unsigned)n;
	return 0;
}
