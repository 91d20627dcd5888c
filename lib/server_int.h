/*
 * server_int: the server's state, shared by its three files alone
 * (server.c, session.c, aggregate.c); see server.h.
 *
 * Locking: s->compute is the server's one processor (a replica's forward,
 * loss, backward and step, and s->busy); s->mu guards the aggregation
 * state (arrived, live, generation, epoch_done, turn, round_mid, the
 * progress sums, each conn's alive and it_done), the admission state
 * (the slots, the handshakes in progress) and the global model G while
 * an aggregation runs.  Threads: one acceptor for the whole run, one per
 * handshake in progress (at most PIPAR_SERVE_HANDSHAKES), one session
 * per admitted device.  A conn's other fields belong to its thread.
 *
 * Who owns what: the server (server.c) owns every conn, model, replica,
 * socket and thread from set-up to release; a session thread owns its
 * buffers; aggregate.c owns nothing of its own.
 */
#ifndef PIPAR_SERVER_INT_H
#define PIPAR_SERVER_INT_H

#include <cJSON.h>
#include <pthread.h>

#include "server.h"
#include "trace.h"
#include "util.h"
#include "exec.h"
#include "checkpoint.h"

struct server;

/* One device's session. */
struct conn {
	struct server *s;
	int k;                          /* device index */
	int slot;                       /* SLOT_*, under s->mu */
	int first_epoch;                /* the epoch its session starts in */
	int has_th;                     /* th is a thread to join */
	struct pipar_chan *ch;
	char id[64];
	long samples;
	struct pipar_norm norm;
	int alive, finished;
	pthread_t th;
	uint32_t seq_in, seq_out;
	int P;                          /* its split point */
	int max_n;                      /* its largest micro-batch */
	size_t dn;                      /* floats of its device part */
	size_t dm;                      /* trainable ones: its momentum */
	float *up;                      /* device part sent up at aggregation */
	float *mom_up;                  /* its momentum, sent up with the part
					 * at an epoch's end when checkpoints
					 * resume (cfg->checkpoint_every) */
	const float *mom_down;          /* in a resumed run, the momentum of
					 * the device that held the slot (its
					 * part's, then its replica's), which
					 * only it may take back; NULL: none */
	struct pipar_model *replica;    /* its server part (sl: the shared one) */
	struct pipar_exec *exec;
	/* Counted this epoch, reported and reset at its end. */
	double loss;
	long seen, correct;
	double bytes_up, bytes_down;
	double busy[3];                 /* the device's compute, uplink, downlink */
	long it_done;                   /* mini-batches, under s->mu */
	long round_seen;                /* samples trained on since the last
					 * aggregation: its FedAvg weight */
	char fault[PIPAR_ERRLEN];
};

/* A device slot: free; reserved by a handshake before the run; waiting
 * for the next aggregation to join a run under way, then joining (PLAN
 * and MODEL on their way); admitted. */
enum { SLOT_FREE, SLOT_RESERVED, SLOT_WAITING, SLOT_JOINING, SLOT_ADMITTED };

struct pending;

struct server {
	const struct pipar_serve_cfg *cfg;
	const struct pipar_mode_ops *ops;
	int K, L, B;
	struct conn *c;
	pthread_mutex_t compute;        /* the server's one processor */
	pthread_mutex_t mu;             /* aggregation state below */
	pthread_cond_t cv;
	int arrived, live, generation, epoch_done;
	int round_mid;                  /* this aggregation is within an epoch */
	struct pipar_model *whole;      /* the global model */
	float *G;                       /* its state: device k holds G[0, dn_k) */
	size_t total_n;
	double t_epoch;
	double busy;                    /* server compute this epoch, under compute */
	cJSON *epochs;                  /* the summary's epoch entries */
	struct pipar_trace *trace;
	struct pipar_model *shared;     /* turns: the one server model */
	int turn;                       /* turns: the device whose turn it is */
	/* Admission (server.c), under mu. */
	int admitting;                  /* devices are taken in */
	int running;                    /* the sessions have started */
	int sessions;                   /* session threads running */
	int joining;                    /* handshakes waiting to join */
	int admitted;
	double last_admit;              /* when the last device came */
	int handshaking;                /* connections in their handshake */
	struct pending *pending;        /* those connections */
	int refused_busy;               /* connections closed for the caps */
	int stop;                       /* the acceptor ends */
	int accepting;
	pthread_t acceptor_th;
	/* Signals (server.c), under mu. */
	int stopping;                   /* the signal that stops the run, 0 */
	double stop_at;
	int cut, sig_done;
	pthread_t sig_th;
	double prog_loss;               /* loss summed this epoch, under mu */
	long prog_seen;                 /* samples it sums */
	/* Resuming (resume.c).  What a checkpoint needs to resume, taken at
	 * every epoch's end when checkpoints resume, under mu. */
	size_t total_train;             /* trainable floats of the model */
	int first_epoch;                /* the run starts in: 1, or after the
					 * epochs a resumed checkpoint holds */
	int snap_epoch;                 /* the epoch the snapshot is of, -1 */
	int owners;                     /* resumed: the slots (mom_down) that
					 * admission waits for */
	float *snap_mom;                /* K x total_train: each device's
					 * momentum (its part's, its replica's) */
	char *snap_alive;               /* K: trained in that epoch */
};

/* server.c: the run summary (pipar-summary(5)) with the epochs so far to
 * cfg->summary, atomically; final: at the end of the run (every device
 * that did not finish is listed), else after an epoch (those that failed
 * so far).  Called with s->mu held, or after the sessions ended. */
int pipar_server_summary(struct server *s, int final, char *err);

/* server.c: the global model, as it is after s->epoch_done epochs, to
 * cfg->checkpoint, atomically, with the run's settings (and, when
 * checkpoints resume, what resuming needs: resume.c). */
int pipar_server_checkpoint(struct server *s, char *err);

/* resume.c.  The snapshot of every live device's momentum at an epoch's
 * end (s->mu held, the sessions at the barrier). */
void pipar_server_snapshot(struct server *s);
/* The run to resume from the snapshot, into info's run and arrays (the
 * arrays' data are the snapshot's; free only info->run and
 * info->arrays); 0 with nothing when there is no snapshot of this
 * epoch.  -1 when out of memory. */
int pipar_server_run_state(struct server *s, struct pipar_ckpt_info *info);
/* After setup: cfg->resume's global model, momenta, roster and records
 * taken in, the run to start after its epochs.  -1 with err. */
int pipar_server_resume(struct server *s, char *err);

/* session.c: one device's conversation after the handshake; the thread's
 * body, arg a struct conn. */
void *pipar_session_run(void *arg);

/* aggregate.c, each called with s->mu held. */
/* FedAvg of the parts sent up and of the replicas, then, at an epoch's
 * end, the global model evaluated and the epoch recorded. */
void pipar_aggregate(struct server *s);
/* The index of the next live device after k (-1 for the first), -1 when
 * there is none. */
int pipar_server_next_alive(const struct server *s, int k);
/* Shows the server's progress. */
void pipar_server_progress_show(struct server *s, int force);

/* aggregate.c, each taking s->mu itself. */
/* Device c finished a mini-batch of seen samples, their loss summed to
 * loss. */
void pipar_server_progress(struct server *s, struct conn *c, double loss, long seen);
/* At an epoch's end (s->mu held): every device waiting to join is
 * given the global model and starts in the next epoch. */
void pipar_server_admit_waiting(struct server *s);
/* Starts c's session thread (s->mu held). */
int pipar_server_start_session(struct server *s, struct conn *c);

/* Marks c dead (once), with why in the log and the summary, and lets an
 * aggregation waiting for it go on. */
void pipar_server_conn_lost(struct conn *c, const char *why);

#define SLOG(s, ...) pipar_runtime_log((s)->cfg->log, (s)->cfg->meter, (s)->cfg->prog, __VA_ARGS__)

#endif
