/*
 * util — see util.h.
 */
#include "bridge/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char *util_vformat(const char *fmt, va_list ap)
{
	char *msg = NULL;
	return vasprintf(&msg, fmt, ap) < 0 ? NULL : msg;
}

void util_setf(char **dst, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = util_vformat(fmt, ap);
	va_end(ap);
	free(*dst);
	*dst = msg;
}

int64_t util_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void util_instant_ms(int64_t ms, char *out, size_t size)
{
	time_t sec = (time_t)(ms / 1000);
	int frac = (int)(ms % 1000);
	if (frac < 0) {
		frac += 1000;
		sec--;
	}
	struct tm tm;
	char base[32];
	if (!gmtime_r(&sec, &tm) || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
	    snprintf(out, size, "%s.%03dZ", base, frac) >= (int)size) {
		if (size)
			out[0] = '\0';
	}
}
