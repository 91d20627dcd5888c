/*
 * plan: predicting an iteration of each training mode, and choosing the
 * split point P and the number of parallel batches N (DESIGN.md section 5).
 *
 * One iteration is simulated exactly as a set of stages on resources:
 * each device's compute, its uplink and its downlink, and one server
 * shared by all K devices.  In pipar mode device k cuts its mini-batch of
 * B samples into N_k micro-batches of near-equal size and runs
 *   F_i  its forward of units 1..P          (after F_{i-1})
 *   U_i  the upload of the activations      (after F_i and U_{i-1})
 *   S_i  the server's forward and backward  (after U_i; the server takes
 *        ready work first come, first served, one stage at a time)
 *   W_i  the download of the gradients      (after S_i and W_{i-1})
 *   B_i  its backward                       (after W_i, B_{i-1} and F_N)
 * then its optimizer step, while the server steps each device's replica.
 * Stage times come from the profiles, fitted as a + b n per unit.  sfl is
 * the same with N = 1; sl runs the devices one after another with N = 1;
 * fl trains the whole model on every device and moves whole models at
 * each aggregation.  An epoch is ceil(samples / B) iterations plus one
 * aggregation.
 */
#ifndef PIPAR_PLAN_H
#define PIPAR_PLAN_H

#include <cJSON.h>

#include "profile.h"

enum pipar_mode {
	PIPAR_MODE_PIPAR,
	PIPAR_MODE_SFL,
	PIPAR_MODE_SL,
	PIPAR_MODE_FL,
};

const char *pipar_mode_name(enum pipar_mode m);
int pipar_mode_parse(const char *s, enum pipar_mode *m);

/* What a mode does, one row each, for the runtime and the planner: a mode
 * is added by adding its row (and its simulation). */
struct pipar_mode_ops {
	const char *name;
	int split;              /* the model is cut at P < L: ACTIVATIONS go up,
				 * GRADIENTS come down (else the device trains
				 * the whole model, P = L) */
	int pipelined;          /* N micro-batches in flight (else N = 1) */
	int turns;              /* one server model; the devices train one after
				 * another, the device part handed on */
	int mid_aggregation;    /* may also aggregate within an epoch */
};

const struct pipar_mode_ops *pipar_mode_ops(enum pipar_mode m);


/* What one device does: split point P (units 1..P on the device, 1 <= P <
 * L; L for fl) and N micro-batches. */
struct pipar_choice {
	int P, N;
};

struct pipar_plan_env {
	int K;                                  /* devices */
	const struct pipar_profile *const *dev; /* K profiles, one per device */
	const struct pipar_profile *srv;
	double up_bps, down_bps;
	double latency;                         /* one-way delay of every frame,
						 * each way, seconds (0: none) */
	int batch;                              /* B */
	long samples;                           /* per device, per epoch */
	double memory;                          /* device memory limit, 0: none */
	int min_micro;                          /* smallest micro-batch searched
						 * (batch-norm needs samples); 0 or 1:
						 * any */
	struct pipar_plan_tables *tables;       /* stage-time tables, built by
						 * pipar_plan_search; NULL: none */
	const struct pipar_choice *fixed;       /* K choices given instead of
						 * searched (a P or N of 0 is
						 * searched); NULL: search all */
};


struct pipar_sim {
	double first;                           /* the first iteration, every
						 * device starting it at once,
						 * seconds */
	double iteration;                       /* the mean over the epoch:
						 * (epoch - aggregation) /
						 * iterations, seconds */
	double aggregation;                     /* seconds per epoch */
	double epoch;
	long iterations;                        /* per epoch */
	double srv_busy;                        /* seconds per iteration */
	double dev_busy[256], up_busy[256], down_busy[256];
	double dev_memory[256];                 /* bytes each device needs */
	int feasible;                           /* within the memory limit */
};

#define PIPAR_PLAN_MAXDEV 256

/* Checks that the profiles describe the same model and batch and fit the
 * roles; -1 with err naming the profile and field. */
int pipar_plan_check(const struct pipar_plan_env *env, const char *const *dev_names,
		     const char *srv_name, char *err);

/* Builds the stage-time tables that make repeated searches fast (env->tables);
 * -1 when out of memory (searches then work without them).  Free with
 * pipar_plan_tables_free, which accepts an env without tables. */
int pipar_plan_tables_build(struct pipar_plan_env *env);
void pipar_plan_tables_free(struct pipar_plan_env *env);

/* Simulates an epoch of mode with device k making choice ch[k]: its first
 * iteration, every device starting together, and for pipar and sfl a
 * second from the times each device is ready for it, from which every
 * device's later iterations are extrapolated. */
void pipar_plan_simulate(const struct pipar_plan_env *env, enum pipar_mode mode,
			 const struct pipar_choice *ch, struct pipar_sim *out);

struct pipar_candidate {
	struct pipar_choice choice;             /* the same for every device */
	double iteration, epoch;
};

/* The largest N the search tries for mode: B / min_micro (at least 1)
 * for pipar, capped at 4096; 1 for the other modes. */
int pipar_plan_max_n(const struct pipar_plan_env *env, enum pipar_mode mode);

/* Checks env->fixed against the model, the batch and mode: P in 1..L-1
 * for split modes (L, or not given, for fl), N in 1..pipar_plan_max_n (1
 * for sfl and sl).  -1 with err naming the device, the option and the
 * value. */
int pipar_plan_fixed_check(const struct pipar_plan_env *env, enum pipar_mode mode,
			   char *err);

/* Searches every P and every N in 1..pipar_plan_max_n for mode (only the
 * values env->fixed gives, where it gives them; fl has one candidate) and writes the best choice per device into best
 * (heterogeneous devices are refined one at a time from the best common
 * choice) and its simulation into sim; the top candidates common to all
 * devices, best first, into top[0..ntop).  Returns the number written to
 * top, or -1 when no candidate fits the memory limit. */
int pipar_plan_search(const struct pipar_plan_env *env, enum pipar_mode mode,
		      struct pipar_choice *best, struct pipar_sim *sim,
		      struct pipar_candidate *top, int ntop);

/* The reference estimate: the longest path through one device's stage
 * graph with a dedicated server (K = 1), as the paper's code computes it
 * when its defects are set aside.  For tests. */
double pipar_plan_reference(const struct pipar_plan_env *env, int k,
			    struct pipar_choice ch);

/* A plan as pipar-plan writes it (pipar-plan(5)), for the programs that
 * follow its choice: parsed once, then carried as this struct (the server
 * sends it to the devices with pipar_plan_file_json). */
struct pipar_plan_file {
	enum pipar_mode mode;
	char model_name[64];
	char *spec;                             /* owned */
	struct pipar_shape in;
	int classes, units;
	int K, batch;
	long samples;
	double up_bps, down_bps;
	double latency;                         /* one-way, seconds; 0: none */
	struct pipar_choice dev[PIPAR_PLAN_MAXDEV];
	int *micro[PIPAR_PLAN_MAXDEV];          /* device k's dev[k].N micro-batch
						 * sizes of a full mini-batch,
						 * summing to batch; owned */
	double iteration, epoch;                /* predicted seconds */
};

/* Parses and checks plan JSON: every required field, the choices against
 * the model the spec builds.  -1 with err naming the field. */
int pipar_plan_parse(const char *text, const char *name,
		     struct pipar_plan_file **out, char *err);
/* The same for a document already parsed (a plan inside a message). */
int pipar_plan_from_json(const cJSON *root, const char *name,
			 struct pipar_plan_file **out, char *err);
/* The plan's own fields as a pipar-plan/1 object that pipar_plan_from_json
 * reads back to the same struct; the planner adds what it alone knows
 * (alternatives, baselines, the profiles' names).  NULL when out of
 * memory. */
cJSON *pipar_plan_file_json(const struct pipar_plan_file *p);
/* The near-equal sizes of N micro-batches of b samples, as pipar-plan
 * writes them: size i is b / N, one more for i < b % N. */
int pipar_plan_micro_size(int b, int N, int i);
/* The largest micro-batch of device k. */
int pipar_plan_max_micro(const struct pipar_plan_file *p, int k);
void pipar_plan_file_free(struct pipar_plan_file *p);

#endif
