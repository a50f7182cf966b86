/*
 * Logging to stderr (see log.h).
 *
 * Each line is built in a buffer owned by the calling thread (its stack, or a
 * heap block for long lines) and handed to a single write(2), so lines of
 * concurrent threads never interleave within a line (stderr's stdio buffer
 * is not used). The only shared state is the level, an atomic.
 *
 * Control characters in the formatted message (a newline from a server's
 * error text, say) are written as \n, \r, \t or \xNN so one event stays one
 * line and cannot forge another.
 */
#include "bridge/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The one global of this module, as log.h states: the process's level. */
static _Atomic int log_current_level = LOG_INFO;

/* A message longer than this is cut, and the line says how much was cut. */
#define LOG_MESSAGE_MAX (64 * 1024)

static const char *const log_level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

void log_set_level(log_level level)
{
	if ((int)level < LOG_ERROR)
		level = LOG_ERROR;
	if ((int)level > LOG_DEBUG)
		level = LOG_DEBUG;
	atomic_store_explicit(&log_current_level, (int)level, memory_order_relaxed);
}

log_level log_get_level(void)
{
	return (log_level)atomic_load_explicit(&log_current_level, memory_order_relaxed);
}

int log_level_parse(const char *s, log_level *out)
{
	if (!s)
		return -1;
	for (int l = LOG_ERROR; l <= LOG_DEBUG; l++) {
		if (strcmp(s, log_level_names[l]) == 0) {
			if (out)
				*out = (log_level)l;
			return 0;
		}
	}
	return -1;
}

/* write() all of it; a failing stderr is not worth more than giving up. */
static void log_write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Bytes msg[0..n) take once control characters are escaped. */
static size_t log_escaped_len(const char *msg, size_t n)
{
	size_t out = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)msg[i];
		if (c == '\n' || c == '\r' || c == '\t')
			out += 2;
		else if (c < 0x20 || c == 0x7f)
			out += 4;
		else
			out += 1;
	}
	return out;
}

static char *log_escape_into(char *dst, const char *msg, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)msg[i];
		if (c == '\n' || c == '\r' || c == '\t') {
			*dst++ = '\\';
			*dst++ = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20 || c == 0x7f) {
			*dst++ = '\\';
			*dst++ = 'x';
			*dst++ = hex[c >> 4];
			*dst++ = hex[c & 0xf];
		} else {
			*dst++ = (char)c;
		}
	}
	return dst;
}

void log_msg(log_level level, const char *subsys, const char *fmt, ...)
{
	int saved_errno = errno;
	char stackmsg[1024];
	char *msg = stackmsg;
	size_t msg_len, cut = 0;
	va_list ap;

	if ((int)level > atomic_load_explicit(&log_current_level, memory_order_relaxed))
		return;
	if ((int)level < LOG_ERROR || (int)level > LOG_DEBUG)
		level = LOG_ERROR;
	if (!subsys)
		subsys = "-";

	/* The message (errno as the caller left it, for any format that reads it). */
	errno = saved_errno;
	va_start(ap, fmt);
	int n = vsnprintf(stackmsg, sizeof(stackmsg), fmt, ap);
	va_end(ap);
	if (n < 0) {
		msg = stackmsg;
		snprintf(stackmsg, sizeof(stackmsg), "(unformattable log message)");
		msg_len = strlen(stackmsg);
	} else if ((size_t)n < sizeof(stackmsg)) {
		msg_len = (size_t)n;
	} else {
		size_t want = (size_t)n;
		if (want > LOG_MESSAGE_MAX) {
			cut = want - LOG_MESSAGE_MAX;
			want = LOG_MESSAGE_MAX;
		}
		char *heap = malloc(want + 1);
		if (heap) {
			errno = saved_errno;
			va_start(ap, fmt);
			vsnprintf(heap, want + 1, fmt, ap);
			va_end(ap);
			msg = heap;
			msg_len = want;
		} else {
			/* Out of memory: what fits, with the count of what did not. */
			msg_len = sizeof(stackmsg) - 1;
			cut = (size_t)n - msg_len;
		}
	}

	/* Timestamp: UTC with milliseconds. */
	struct timespec ts;
	struct tm tm;
	char stamp[64];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);

	char head[160];
	int hn = snprintf(head, sizeof(head), "%s %-5s %-5.32s ", stamp, log_level_names[level], subsys);
	if (hn < 0)
		hn = 0;
	if ((size_t)hn >= sizeof(head))
		hn = (int)sizeof(head) - 1;

	char tail[64] = "";
	if (cut)
		snprintf(tail, sizeof(tail), " ...(%zu bytes cut)", cut);

	size_t body = log_escaped_len(msg, msg_len);
	size_t total = (size_t)hn + body + strlen(tail) + 1;
	char stackline[2048];
	char *line = total <= sizeof(stackline) ? stackline : malloc(total);
	if (line) {
		char *p = line;
		memcpy(p, head, (size_t)hn);
		p += hn;
		p = log_escape_into(p, msg, msg_len);
		memcpy(p, tail, strlen(tail));
		p += strlen(tail);
		*p++ = '\n';
		log_write_all(line, (size_t)(p - line));
		if (line != stackline)
			free(line);
	} else {
		/* No memory for the line: say so (still one write) rather than drop it silently. */
		static const char oom[] = "(log message dropped: out of memory)\n";
		memcpy(stackline, head, (size_t)hn);
		memcpy(stackline + hn, oom, sizeof(oom) - 1);
		log_write_all(stackline, (size_t)hn + sizeof(oom) - 1);
	}
	if (msg != stackmsg)
		free(msg);
	errno = saved_errno;
}

int log_level_option(const char *name)
{
	log_level lv;
	if (log_level_parse(name, &lv) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: --log-level must be error, warn, info or debug\n");
		return -1;
	}
	log_set_level(lv);
	return 0;
}
