/*
 * file: whole files read (a path or "-" for standard input) and outputs
 * written atomically (a temporary file renamed over the path), so that a
 * crash or a full disk never leaves half a file.
 *
 * Who owns what: the text read is the caller's to free; a struct
 * pipar_out is the caller's, and its temporary file is removed by
 * pipar_out_close whatever happened.
 */
#ifndef PIPAR_FILE_H
#define PIPAR_FILE_H

#include <stddef.h>
#include <stdio.h>

/* Reads the whole file at path ("-": standard input) into a NUL-terminated
 * malloc'd string of *len bytes (len may be NULL).  NULL with err naming
 * the path when it cannot be read or holds more than max bytes. */
char *pipar_read_file(const char *path, size_t max, size_t *len, char *err);

/* A file written atomically: pipar_out_open creates a temporary file
 * beside path (PATH.PID.tmp, so that rename is atomic) or, for path "-",
 * takes standard output (a path that exists and is not a regular file,
 * such as /dev/null or a FIFO, is written in place); write to o->f;
 * pipar_out_close flushes, syncs and
 * renames it over path, or removes it when failed is set or anything went
 * wrong, so that path holds either its old contents or all of the new.
 * Both return -1 with err naming path. */
struct pipar_out {
	FILE *f;
	char *tmp;              /* NULL for standard output or direct */
	const char *path;
	int direct;             /* path is not a regular file (a device, a
				 * pipe): written in place, not renamed over */
};
int pipar_out_open(struct pipar_out *o, const char *path, char *err);
int pipar_out_close(struct pipar_out *o, int failed, char *err);
/* Checks, before any work is done, that path can be written the way
 * pipar_out_open writes it: "-" can; otherwise path must not be a
 * directory and the temporary file beside it is created and removed.
 * -1 with err naming the path and why. */
int pipar_out_check(const char *path, char *err);

#endif
