/*
 * timeline: the traces of one run (see trace.h) drawn as a picture, an SVG
 * document of one horizontal lane per party and resource (the server's
 * first, then the devices' in pid order; lanes without events left out),
 * one coloured box per complete event, as long as the event lasted, and a
 * time axis in seconds from the start of what is drawn.  Idle time is the
 * empty lane between boxes.  Each box carries its stage, iteration,
 * micro-batch, start, duration and bytes as a tooltip, and the legend
 * lists the stages drawn.
 *
 * The SVG is written with plain stdio, no drawing library.  Boxes are
 * <rect class="ev"> elements with data-stage, data-iteration and data-micro
 * attributes, lanes <g class="lane">, legend entries <g class="key">, so
 * that a picture can be checked by program.
 *
 * Who owns what: the traces read are this module's for the call and freed
 * before it returns; the caller owns the output stream and the paths.
 */
#ifndef PIPAR_TIMELINE_H
#define PIPAR_TIMELINE_H

/* More events than this are not drawn: the picture would be unreadable
 * and the file hundreds of megabytes. */
#define PIPAR_TIMELINE_MAX_EVENTS 200000

/* Reads the n trace files at paths ("-": standard input), one per party of
 * one run, and writes the timeline to out_path ("-": standard output,
 * flushed, not closed), atomically: a temporary file in the same directory
 * renamed over out_path once complete, so that a failure leaves no partial
 * picture.  it_from < 0 draws every event; otherwise only those whose
 * args.iteration lies in [it_from, it_to], with those without an iteration
 * (-1: parameter exchange, control messages; and "aggregate", which
 * records there the epoch it closes) that lie within the time the
 * selected ones span, and the axis starts at the first drawn event.
 *
 * Returns 0 on success; -1 with err naming the file and what is wrong in it
 * (not JSON, a pipar file of another kind, no traceEvents array, an
 * event without ph, pid, name, tid, ts
 * or dur, a negative dur, a non-finite ts, two files of the same party, no
 * events to draw) or the output that could not be written; -2 with err
 * saying how many events there are when more than
 * PIPAR_TIMELINE_MAX_EVENTS would be drawn.  Input errors are found before
 * anything is written; a failed write leaves no file at out_path. */
int pipar_timeline_svg(const char *const *paths, int n, int it_from, int it_to,
		       const char *out_path, char *err);

#endif
