/*
 * trace: timed events of a run, written as trace-event JSON (complete
 * "X" events).  Each party (the server, each device) is a process; each
 * of its resources (compute, uplink, downlink) a thread; each stage a
 * complete ("X") event with its iteration and micro-batch.  Times are
 * taken from pipar_now() and written in microseconds after adding the
 * party's offset to the server's clock, so that the traces of one run
 * line up.  Recording is thread-safe.
 *
 * A trace file carries "format": "pipar-trace/1" beside the trace-event
 * keys (viewers keep unknown top-level keys as metadata); the reader
 * (pipar_trace_read, which the summary and timeline.h use) also takes
 * trace-event JSON without it, but refuses a pipar file of another kind
 * by name.
 *
 * Who owns what: a trace is the caller's from pipar_trace_new to
 * pipar_trace_free; recording copies nothing the caller keeps.  The summary of a run's
 * traces is a "pipar-trace-summary/1" document.
 */
#ifndef PIPAR_TRACE_H
#define PIPAR_TRACE_H

#include <stddef.h>

#define PIPAR_TRACE_FORMAT "pipar-trace/1"
#define PIPAR_TRACE_SUMMARY_FORMAT "pipar-trace-summary/1"

enum pipar_resource {
	PIPAR_RES_COMPUTE = 1,
	PIPAR_RES_UPLINK,
	PIPAR_RES_DOWNLINK,
};

struct pipar_trace;

/* A trace for party pid (0 the server, k + 1 device k) named name.  NULL
 * when out of memory. */
struct pipar_trace *pipar_trace_new(int pid, const char *name);

/* Records a stage [start, start + dur) on a resource; accepts t == NULL. */
void pipar_trace_event(struct pipar_trace *t, const char *stage,
		       enum pipar_resource res, double start, double dur,
		       int iteration, int micro);

/* As pipar_trace_event, naming the device (0-based) the server works for. */
void pipar_trace_event_for(struct pipar_trace *t, const char *stage,
			   enum pipar_resource res, double start, double dur,
			   int iteration, int micro, int device);

/* As pipar_trace_event, with the bytes a link stage carried. */
void pipar_trace_event_bytes(struct pipar_trace *t, const char *stage,
			     enum pipar_resource res, double start, double dur,
			     int iteration, int micro, double bytes);

/* Seconds to add to this party's clock to read the server's. */
void pipar_trace_set_offset(struct pipar_trace *t, double offset);

/* Busy seconds recorded on a resource since the last reset, and reset. */
double pipar_trace_busy(struct pipar_trace *t, enum pipar_resource res, int reset);

/* Writes the trace to path (atomically: a temporary file and rename);
 * -1 with err.  Accepts t == NULL (does nothing). */
int pipar_trace_write(struct pipar_trace *t, const char *path, char *err);

void pipar_trace_free(struct pipar_trace *t);

/* ---- reading: one reader for the summary and the timeline ---- */

/* A complete event ("ph": "X") of a trace file. */
struct pipar_trace_ev {
	char *stage;                    /* its name, owned by the set */
	int pid, tid, file;             /* party, resource, index of its file */
	int iteration, micro, device;   /* -1 when not recorded */
	double start, dur;              /* seconds */
	double bytes;                   /* < 0: none recorded */
};

/* A party a file names: by a metadata event (name its process_name) or
 * by one of its events (name NULL). */
struct pipar_trace_party {
	int pid, file;
	char *name;                     /* owned by the set; may be NULL */
};

/* The traces of one run as read.  Who owns what: the set owns its arrays
 * and every string in them, until pipar_trace_set_free. */
struct pipar_trace_set {
	struct pipar_trace_ev *ev;      /* in file order */
	size_t nev, capev;
	struct pipar_trace_party *party;/* sorted by pid, then file */
	size_t nparty, capparty;
};

/* Reads the n files of one run (one file per party) into *s: every event
 * is checked (an object; ph, name and pid present, pid a party number; a
 * complete event's tid a resource number, ts and dur finite, dur >= 0,
 * iteration and micro integers from -1, device a party number, bytes a
 * count), and a party named in two files is refused (traces of different
 * runs, or one file given twice).  -1 with err naming the file, the event
 * (counted from 1) and the field; *s is then empty. */
int pipar_trace_read(const char *const *paths, int n, struct pipar_trace_set *s, char *err);
void pipar_trace_set_free(struct pipar_trace_set *s);

/* The name of party pid: its process_name, else "server" (pid 0) or
 * "device N".  Returns buf. */
const char *pipar_trace_party_name(const struct pipar_trace_set *s, int pid, char *buf,
				   size_t size);

/* Reads the traces of one run (one file per party) and summarises them as
 * a JSON object (malloc'd text in *out; "format" PIPAR_TRACE_SUMMARY_FORMAT;
 * seconds to the microsecond, bytes whole): the run's span; per party and
 * resource the busy seconds (overlapping events counted once), the idle
 * seconds over the span and the utilisation; the iteration times (between
 * consecutive "step" or "train" events of each device: count, mean,
 * median, p95); and the bottleneck, the resource busiest over the span.
 * -1 with err naming the file and what is wrong in it. */
int pipar_trace_summarise(const char *const *paths, int n, char **out, char *err);

#endif
