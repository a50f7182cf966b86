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
