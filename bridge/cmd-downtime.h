/*
 * cmd-downtime — the downtime commands of the program: users, chart,
 * summary, and the downtime part of review (entries, show, reapply,
 * discard, link). Each takes the argv after the program name (argv[0] is
 * the command) and returns the exit status.
 */
#pragma once

int cmd_users(int argc, char **argv);
int cmd_chart(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_audit(int argc, char **argv);

/* review's verbs for downtime entries; true when verb is one of them. */
int cmd_review_downtime_is(const char *verb);
int cmd_review_downtime(int argc, char **argv);
