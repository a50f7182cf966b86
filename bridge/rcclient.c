/*
 * rcclient — see rcclient.h.
 */
#include "bridge/rcclient.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/backoff.h"
#include "bridge/log.h"
#include "bridge/util.h"
#include "offline-store/outbox.h"
#include "offline-store/store.h"

/* ---- servers -------------------------------------------------------------- */

int rc_servers_new(rc_servers **out, const config *cfg)
{
	rc_servers *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->v = calloc(cfg->n_redcap_projects ? cfg->n_redcap_projects : 1, sizeof(*s->v));
	if (!s->v) {
		free(s);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_redcap_projects; i++) {
		const char *url = cfg->redcap_projects[i].url;
		if (rc_servers_get(s, url))
			continue;
		rc_server *e = &s->v[s->n];
		e->url = strdup(url);
		/* The window is timed here when a request starts; REDCap times it
		 * when the request arrives, and the first of a burst arrives later
		 * (it opens the connection). Measured at the cap of 600, that let
		 * request 601 land inside REDCap's minute: a ban. So the window is
		 * a minute plus RC_WINDOW_MARGIN_MS. */
		if (!e->url ||
		    ratelimit_init(&e->rl, cfg->redcap_max_requests_per_minute, 60000 + RC_WINDOW_MARGIN_MS) != 0) {
			free(e->url);
			e->url = NULL;
			rc_servers_free(s);
			return -ENOMEM;
		}
		e->rate_fd = -1;
		s->n++;
		/* The shared window: a file per REDCap URL beside the store. */
		if (cfg->store_path) {
			uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
			for (const char *q = url; *q; q++)
				h = (h ^ (unsigned char)*q) * 0x100000001b3ULL;
			char *path = NULL;
			if (asprintf(&path, "%s.redcap-rate-%016" PRIx64, cfg->store_path, h) >= 0) {
				e->rate_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
				if (e->rate_fd < 0)
					log_warn("redcap", "cannot open %s (%s): the request-rate cap holds for this "
						 "process only", path, strerror(errno));
				free(path);
			}
		}
	}
	*out = s;
	return 0;
}

void rc_servers_free(rc_servers *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].url);
		ratelimit_deinit(&s->v[i].rl);
		if (s->v[i].rate_fd >= 0)
			close(s->v[i].rate_fd);
	}
	free(s->v);
	free(s);
}

char *rc_ban_get(store *st, const char *project)
{
	char *halt = NULL;
	if (!st || store_project_get(st, project, RC_HALT_KEY, &halt) != 0 || !halt || !*halt) {
		free(halt);
		return NULL;
	}
	return halt;
}

int rc_ban_record(store *st, const config *cfg, const char *url, const char *what)
{
	int rc = 0;
	for (size_t i = 0; i < cfg->n_redcap_projects; i++)
		if (strcmp(cfg->redcap_projects[i].url, url) == 0 && rc == 0)
			rc = store_project_set(st, cfg->redcap_projects[i].name, RC_HALT_KEY, what);
	return rc;
}

rc_server *rc_servers_get(rc_servers *s, const char *url)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].url, url) == 0)
			return &s->v[i];
	return NULL;
}

/* ---- a call --------------------------------------------------------------- */

void rc_call_init(rc_call *c, uv_loop_t *loop, http_client *http, const config *cfg, rc_server *srv,
		  const char *url, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->http = http;
	c->cfg = cfg;
	c->srv = srv;
	c->url = url;
	c->name = name;
	c->rng = (uint64_t)util_wall_ms() * 0x9E3779B97F4A7C15ULL | 1;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
}

static void body_drop(rc_call *c)
{
	redcap_body_free(c->body, c->body_len);
	c->body = NULL;
	c->body_len = 0;
}

static void finish(rc_call *c, const rc_result *r)
{
	rc_done_fn done = c->done;
	void *ud = c->ud;
	c->busy = false;
	c->attempt = 0;
	body_drop(c);
	done(ud, r);
}

static void on_answer(http_response *resp, void *ud);

static void submit(rc_call *c)
{
	ratelimit_record(&c->srv->rl, uv_now(c->loop));
	c->requests++;
	http_request rq = {
		.method = "POST",
		.url = c->url,
		.headers = (const char *const[]){ "Content-Type: application/x-www-form-urlencoded",
						  "Accept: application/json", NULL },
		.body = c->body,
		.body_len = c->body_len,
		.timeout_ms = (long)c->cfg->redcap_timeout_s * 1000,
		.max_body = (size_t)1 << 30,
	};
	c->xfer = http_submit(c->http, &rq, on_answer, c);
	if (!c->xfer) {
		redcap_answer a = REDCAP_ANSWER_NULL;
		rc_result r = { .cls = REDCAP_RETRY, .gave_up = true, .answer = &a, .desc = "out of memory" };
		finish(c, &r);
	}
}

/* Send now if the server's window allows, else when it does. */
static void on_timer(uv_timer_t *t)
{
	rc_call *c = t->data;
	rc_server *srv = c->srv;
	uint64_t d = ratelimit_delay(&srv->rl, uv_now(c->loop));
	if (d == 0 && srv->rate_fd >= 0) {
		/* This process may send: do the site's other processes leave room? */
		int rc = ratelimit_shared_take(srv->rate_fd, c->cfg->redcap_max_requests_per_minute,
					       60000 + RC_WINDOW_MARGIN_MS, (uint64_t)util_wall_ms(), &d);
		if (rc != 0) {
			log_warn("redcap", "the shared request-rate window failed (%s): this process keeps its own",
				 strerror(-rc));
			close(srv->rate_fd);
			srv->rate_fd = -1;
			d = 0;
		} else if (d > 0) {
			log_debug("redcap", "%s: the site's rate window is full (other processes), waiting %.1f s",
				  c->name, (double)d / 1000.0);
		}
	} else if (d > 0) {
		log_debug("redcap", "%s: rate window full, waiting %.1f s", c->name, (double)d / 1000.0);
	}
	if (d > 0) {
		uv_timer_start(&c->timer, on_timer, d, 0);
		return;
	}
	submit(c);
}

/* A transient failure: back off and send the same body again, or give up. */
static bool retry_later(rc_call *c, const char *why, int64_t retry_after_ms)
{
	const config *cfg = c->cfg;
	c->attempt++;
	if (c->attempt >= cfg->redcap_retry_max_attempts)
		return false;
	c->retries++;
	uint64_t delay = backoff_delay_ms(c->attempt, cfg->redcap_retry_base_ms, cfg->redcap_retry_max_ms,
					  retry_after_ms, &c->rng);
	log_warn("redcap", "%s: %s; retry %u of %u in %.1f s", c->name, why, c->attempt,
		 cfg->redcap_retry_max_attempts - 1, (double)delay / 1000.0);
	uv_timer_start(&c->timer, on_timer, delay, 0);
	return true;
}

static void on_answer(http_response *resp, void *ud)
{
	rc_call *c = ud;
	c->xfer = NULL;
	redcap_answer a = REDCAP_ANSWER_NULL;
	char desc[CURL_ERROR_SIZE + 64];
	rc_result r = { .answer = &a, .desc = desc };
	if (resp->curl_code != CURLE_OK) {
		snprintf(desc, sizeof(desc), "network error: %s", resp->error);
		if (retry_later(c, desc, -1))
			return;
		r.cls = REDCAP_RETRY;
		r.gave_up = true;
		finish(c, &r);
		return;
	}
	int cls = redcap_classify((int)resp->status, resp->body, resp->len, &a);
	if (cls < 0) {
		snprintf(desc, sizeof(desc), "out of memory");
		r.cls = REDCAP_RETRY;
		r.gave_up = true;
		finish(c, &r);
		return;
	}
	redcap_answer_describe(&a, desc, sizeof(desc));
	r.cls = (redcap_class)cls;
	r.status = (int)resp->status;
	r.body = resp->body;
	r.len = resp->len;
	if (r.cls == REDCAP_RETRY) {
		int64_t ra = -1;
		if (resp->retry_after) {
			char *end = NULL;
			long v = strtol(resp->retry_after, &end, 10);
			if (end && *end == '\0' && v >= 0)
				ra = (int64_t)v * 1000;
		}
		if (retry_later(c, desc, ra)) {
			redcap_answer_deinit(&a);
			return;
		}
		r.gave_up = true;
	}
	finish(c, &r);
	redcap_answer_deinit(&a);
}

int rc_call_send(rc_call *c, redcap_body *b, rc_done_fn done, void *ud)
{
	if (c->busy || c->closing)
		return -EBUSY;
	int err = b->err;
	body_drop(c);
	c->body = redcap_body_take(b, &c->body_len);
	redcap_body_deinit(b);
	if (!c->body)
		return err ? err : -ENOMEM;
	c->busy = true;
	c->attempt = 0;
	c->done = done;
	c->ud = ud;
	/* Through the timer even when the window is open: done is never
	 * called from inside this call. */
	uv_timer_start(&c->timer, on_timer, 0, 0);
	return 0;
}

void rc_call_cancel(rc_call *c)
{
	if (c->xfer) {
		http_cancel(c->xfer);
		c->xfer = NULL;
	}
	uv_timer_stop(&c->timer);
	c->busy = false;
	c->attempt = 0;
	body_drop(c);
}

static void on_closed(uv_handle_t *h)
{
	rc_call *c = h->data;
	if (c->closed)
		c->closed(c);
}

void rc_call_close(rc_call *c, void (*closed)(rc_call *c))
{
	rc_call_cancel(c);
	c->closing = true;
	c->closed = closed;
	uv_close((uv_handle_t *)&c->timer, on_closed);
}
