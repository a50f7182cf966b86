/*
 * export — `fhir-redcap-bridge export`: a REDCap project's records and
 * data dictionary to files, in batches, resumable, under the same traffic
 * rules as the daemon (bridge/rcclient.h).
 *
 * The plan is REDCapR's: the record-id field first (with the selection's
 * filters), then the records in batches of ids; a batch REDCap cannot hold
 * in memory is split in halves. Every batch is checked (each id asked for
 * came back) and appended to `.records.<ext>.partial`; after each batch the
 * plan and the file offset are checkpointed in the store (encrypted: ids
 * may be MRNs), so a rerun of the same command continues where the last
 * one stopped. The files get their final names only when complete.
 */
#pragma once

/* argc/argv as after the command word; returns the exit status. */
int export_main(int argc, char **argv);
