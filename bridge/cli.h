/*
 * cli — what every subcommand does the same way: find the config file
 * (--config, else $FHIR_REDCAP_BRIDGE_CONFIG), apply --log-level, load the
 * config with its log.level, and name the person at the terminal.
 */
#pragma once

#include <stdbool.h>

#include "bridge/config.h"

/*
 * After option parsing: *config_path falls back to $FHIR_REDCAP_BRIDGE_CONFIG;
 * --log-level (level, may be NULL) is applied. Returns 0, or -2 after
 * printing why ("fhir-redcap-bridge <cmd>: --config FILE is required").
 */
int cli_finish_options(const char *cmd, const char **config_path, const char *level);

/*
 * Load the config (the message on stderr when it fails: returns -1) and use
 * its log.level unless --log-level was given.
 */
int cli_load_config(config *cfg, const char *path, bool log_level_given);

/* The login name of the person running the command ($SUDO_USER, $USER,
 * getlogin()), or "unknown". */
const char *cli_os_user(void);
