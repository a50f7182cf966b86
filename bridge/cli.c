/*
 * bridge/cli.c — see cli.h.
 */
#include "bridge/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bridge/log.h"

int cli_finish_options(const char *cmd, const char **config_path, const char *level)
{
	if (!*config_path)
		*config_path = getenv("FHIR_REDCAP_BRIDGE_CONFIG");
	if (!*config_path) {
		fprintf(stderr, "fhir-redcap-bridge %s: --config FILE is required\n", cmd);
		return -2;
	}
	if (level && log_level_option(level) != 0)
		return -2;
	return 0;
}

int cli_load_config(config *cfg, const char *path, bool log_level_given)
{
	char err[1024];
	if (config_load(cfg, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		return -1;
	}
	if (!log_level_given && cfg->log_level) {
		log_level lv;
		if (log_level_parse(cfg->log_level, &lv) == 0)
			log_set_level(lv);
	}
	return 0;
}

const char *cli_os_user(void)
{
	const char *u = getenv("SUDO_USER");
	if (!u || !*u)
		u = getenv("USER");
	if (!u || !*u)
		u = getlogin();
	return u && *u ? u : "unknown";
}
