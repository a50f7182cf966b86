#include "bridge/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int ratelimit_init(ratelimit *rl, unsigned limit, uint64_t window_ms)
{
	*rl = (ratelimit)RATELIMIT_NULL;
	if (limit == 0 || window_ms == 0)
		return -EINVAL;
	rl->ring = calloc(limit, sizeof(*rl->ring));
	if (!rl->ring)
		return -ENOMEM;
	rl->limit = limit;
	rl->window_ms = window_ms;
	return 0;
}

void ratelimit_deinit(ratelimit *rl)
{
	if (!rl)
		return;
	free(rl->ring);
	*rl = (ratelimit)RATELIMIT_NULL;
}

uint64_t ratelimit_delay(const ratelimit *rl, uint64_t now_ms)
{
	if (rl->count < rl->limit)
		return 0;
	/* Full: the oldest of the last `limit` must leave the window first. */
	uint64_t free_at = rl->ring[rl->head] + rl->window_ms;
	return free_at > now_ms ? free_at - now_ms : 0;
}

void ratelimit_record(ratelimit *rl, uint64_t now_ms)
{
	if (rl->count < rl->limit) {
		rl->ring[(rl->head + rl->count) % rl->limit] = now_ms;
		rl->count++;
		return;
	}
	/* Replace the oldest. */
	rl->ring[rl->head] = now_ms;
	rl->head = (rl->head + 1) % rl->limit;
}

/* ---- the window shared through a file ------------------------------------- */

static const char shared_magic[8] = { 'F', 'R', 'B', 'R', 'A', 'T', 'E', '1' };

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int shared_read(int fd, uint64_t **times, size_t *n)
{
	/* *times always gets room for one more time than it holds. */
	struct stat sb;
	*times = NULL;
	*n = 0;
	if (fstat(fd, &sb) != 0)
		return -errno;
	size_t size = (size_t)sb.st_size;
	size_t cnt = size < sizeof(shared_magic) ? 0 : (size - sizeof(shared_magic)) / sizeof(uint64_t);
	if (cnt > RATELIMIT_SHARED_MAX)
		cnt = RATELIMIT_SHARED_MAX;
	char magic[sizeof(shared_magic)];
	uint64_t *t = malloc((cnt + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	*times = t;
	if (size < sizeof(shared_magic) || pread(fd, magic, sizeof(magic), 0) != (ssize_t)sizeof(magic) ||
	    memcmp(magic, shared_magic, sizeof(magic)) != 0)
		return 0; /* new, or not ours: start it anew */
	ssize_t got = cnt ? pread(fd, t, cnt * sizeof(*t), sizeof(shared_magic)) : 0;
	if (got < 0)
		return -errno;
	*n = (size_t)got / sizeof(*t);
	return 0;
}

static int shared_write(int fd, const uint64_t *times, size_t n)
{
	if (pwrite(fd, shared_magic, sizeof(shared_magic), 0) != (ssize_t)sizeof(shared_magic))
		return -errno;
	size_t len = n * sizeof(*times);
	if (n && pwrite(fd, times, len, sizeof(shared_magic)) != (ssize_t)len)
		return -errno;
	return ftruncate(fd, (off_t)(sizeof(shared_magic) + len)) == 0 ? 0 : -errno;
}

int ratelimit_shared_take(int fd, unsigned limit, uint64_t window_ms, uint64_t now_ms, uint64_t *delay_ms)
{
	*delay_ms = 0;
	if (fd < 0 || limit == 0 || limit > RATELIMIT_SHARED_MAX || window_ms == 0)
		return -EINVAL;
	while (flock(fd, LOCK_EX) != 0)
		if (errno != EINTR)
			return -errno;
	uint64_t *t = NULL;
	size_t n = 0;
	int rc = shared_read(fd, &t, &n);
	if (rc == 0) {
		/* Keep the times inside the window, in order. */
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (t[i] + window_ms > now_ms && t[i] <= now_ms + window_ms)
				t[k++] = t[i];
		n = k;
		if (n > 1)
			qsort(t, n, sizeof(*t), cmp_u64);
		if (n >= limit) {
			/* Full: the request `limit` places back must leave first. */
			uint64_t free_at = t[n - limit] + window_ms;
			*delay_ms = free_at > now_ms ? free_at - now_ms : 1;
		} else {
			t[n++] = now_ms;
			rc = shared_write(fd, t, n);
		}
	}
	free(t);
	flock(fd, LOCK_UN);
	return rc;
}
