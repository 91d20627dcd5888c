/*
 * Checkpoints: a save/load round trip is exact; every truncation and
 * every kind of corruption is refused with a message naming the fault;
 * a failed write leaves the previous file as it was.
 */
#define _POSIX_C_SOURCE 200809L
#include <archive.h>
#include <archive_entry.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "tap.h"
#include "rng.h"

static char dir[] = "/tmp/pipar-ckpt-XXXXXX";

struct entry {
	char name[128];
	unsigned char *data;
	size_t size;
};

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	PIPAR_ASSERT(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	PIPAR_ASSERT(fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Reads every entry of a zip into memory. */
static int entries_read(const char *path, struct entry *e, int max)
{
	struct archive *a = archive_read_new();
	struct archive_entry *ae;
	int n = 0;

	archive_read_support_format_zip(a);
	PIPAR_ASSERT(archive_read_open_filename(a, path, 65536) == ARCHIVE_OK);
	while (n < max && archive_read_next_header(a, &ae) == ARCHIVE_OK) {
		size_t sz = (size_t)archive_entry_size(ae);

		snprintf(e[n].name, sizeof(e[n].name), "%s", archive_entry_pathname(ae));
		e[n].data = malloc(sz + 1);
		e[n].size = (size_t)archive_read_data(a, e[n].data, sz);
		n++;
	}
	archive_read_free(a);
	return n;
}

static void entries_write(const char *path, const struct entry *e, int n)
{
	struct archive *a = archive_write_new();

	archive_write_set_format_zip(a);
	archive_write_set_options(a, "zip:compression=store");
	PIPAR_ASSERT(archive_write_open_filename(a, path) == ARCHIVE_OK);
	for (int i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();

		archive_entry_set_pathname(ae, e[i].name);
		archive_entry_set_size(ae, (la_int64_t)e[i].size);
		archive_entry_set_filetype(ae, AE_IFREG);
		archive_entry_set_perm(ae, 0644);
		archive_write_header(a, ae);
		archive_write_data(a, e[i].data, e[i].size);
		archive_entry_free(ae);
	}
	archive_write_close(a);
	archive_write_free(a);
}

static void entries_free(struct entry *e, int n)
{
	for (int i = 0; i < n; i++)
		free(e[i].data);
}

/* Writes a modified copy of the checkpoint at src and checks that loading
 * it fails with a message containing needle. */
static void refused(const char *src, const char *what, const char *needle,
		    void (*mutate)(struct entry *e, int *n))
{
	struct entry e[128];
	int n = entries_read(src, e, 128);
	char path[256], err[PIPAR_ERRLEN] = "";
	struct pipar_model *m = NULL;
	struct pipar_ckpt_info info;

	mutate(e, &n);
	snprintf(path, sizeof(path), "%s/bad.npz", dir);
	entries_write(path, e, n);
	ok(pipar_checkpoint_load(path, &m, &info, err) < 0 && m == NULL &&
		   strstr(err, needle) != NULL,
	   "%s is refused: %s", what, err);
	entries_free(e, n);
}

static void drop_array(struct entry *e, int *n)
{
	free(e[3].data);
	memmove(&e[3], &e[4], sizeof(*e) * (size_t)(*n - 4));
	(*n)--;
}

static void extra_entry(struct entry *e, int *n)
{
	snprintf(e[*n].name, sizeof(e[*n].name), "notes.txt");
	e[*n].data = (unsigned char *)strdup("hello");
	e[*n].size = 5;
	(*n)++;
}

static void swap_order(struct entry *e, int *n)
{
	struct entry t = e[0];

	e[0] = e[1];
	e[1] = t;
}

static void dtype_f8(struct entry *e, int *n)
{
	char *p = strstr((char *)e[1].data + 10, "<f4");

	PIPAR_ASSERT(p);
	p[2] = '8';
}

static void fortran(struct entry *e, int *n)
{
	char *p = strstr((char *)e[1].data + 10, "False");

	PIPAR_ASSERT(p);
	memcpy(p, "True ", 5);
}

static void short_data(struct entry *e, int *n)
{
	e[1].size -= 4;
}

static void nan_value(struct entry *e, int *n)
{
	float v = 0.0f / 0.0f;
	size_t hl = (size_t)e[1].data[8] | (size_t)e[1].data[9] << 8;

	memcpy(e[1].data + 10 + hl + 4, &v, 4);
}

static void drop_last(struct entry *e, int *n)
{
	free(e[*n - 1].data);
	(*n)--;
}

static void extra_run_entry(struct entry *e, int *n)
{
	e[*n] = e[*n - 1];
	e[*n].data = malloc(e[*n].size);
	memcpy(e[*n].data, e[*n - 1].data, e[*n].size);
	snprintf(e[*n].name, sizeof(e[*n].name), "run/zz.npy");
	(*n)++;
}

/* Replaces the first occurrence of from with to in the manifest. */
static const char *man_from, *man_to;
static void manifest_edit(struct entry *e, int *n)
{
	char *text = (char *)e[0].data, *p;
	size_t fl = strlen(man_from), tl = strlen(man_to);
	char *out = malloc(e[0].size + tl + 1);

	text[e[0].size] = 0;
	p = strstr(text, man_from);
	PIPAR_ASSERT(p);
	memcpy(out, text, (size_t)(p - text));
	memcpy(out + (p - text), man_to, tl);
	strcpy(out + (p - text) + tl, p + fl);
	free(e[0].data);
	e[0].data = (unsigned char *)out;
	e[0].size = strlen(out);
}

static struct pipar_model *model(const char *spec, struct pipar_shape in, int classes,
				 uint64_t seed)
{
	char err[PIPAR_ERRLEN], *json;
	struct pipar_model *m = NULL;

	if (pipar_model_load_spec(spec, &json, err) < 0)
		json = strdup(spec);
	if (pipar_model_new(json, in, classes, 0, -1, seed, &m, err) < 0)
		diag("%s", err);
	free(json);
	return m;
}

static int same_state(const struct pipar_model *a, const struct pipar_model *b, int mom)
{
	if (a->nunits != b->nunits || strcmp(a->spec, b->spec))
		return 0;
	for (int u = 0; u < a->nunits; u++) {
		if (a->units[u].nstate != b->units[u].nstate ||
		    memcmp(a->units[u].data, b->units[u].data, 4 * a->units[u].nstate))
			return 0;
		if (mom && memcmp(a->units[u].mom, b->units[u].mom, 4 * a->units[u].ntrain))
			return 0;
	}
	return 1;
}

int main(void)
{
	char path[256], err[PIPAR_ERRLEN] = "";
	struct pipar_shape in = {1, 12, 12};
	struct pipar_model *m, *r = NULL;
	struct pipar_ckpt_info info = {0}, back = {0};
	struct pipar_rng g;
	unsigned char *bytes;
	size_t len;

	PIPAR_ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.npz", dir);
	m = model("vgg5", in, 10, 3);
	PIPAR_ASSERT(m);
	/* Momentum and running statistics with values of their own. */
	pipar_rng_seed(&g, 9, 9);
	for (int u = 0; u < m->nunits; u++) {
		for (size_t i = 0; i < m->units[u].ntrain; i++)
			m->units[u].mom[i] = (float)pipar_rng_normal(&g);
		for (size_t i = m->units[u].ntrain; i < m->units[u].nstate; i++)
			m->units[u].data[i] = (float)pipar_rng_uniform(&g) + 0.5f;
	}
	info.epoch = 7;
	info.norm.channels = 1;
	info.norm.mean[0] = 0.25f;
	info.norm.std[0] = 0.375f;
	info.training = "{\"batch\":50,\"data\":\"x\\\"y\"}";
	info.rng[0] = 0x0123456789abcdefULL;
	info.rng[1] = 0xfedcba9876543210ULL;
	ok(pipar_checkpoint_save(path, m, &info, 1, err) == 0, "save: %s", err);
	ok(pipar_checkpoint_load(path, &r, &back, err) == 0, "load: %s", r ? "ok" : err);
	ok(r && same_state(m, r, 1), "parameters, buffers and momentum round-trip exactly");
	ok(back.epoch == 7 && back.norm.channels == 1 && back.norm.mean[0] == 0.25f &&
		   back.norm.std[0] == 0.375f && back.rng[0] == info.rng[0] &&
		   back.rng[1] == info.rng[1] && back.has_momentum,
	   "epoch, normalisation, generator state and momentum flag round-trip");
	ok(back.training && strstr(back.training, "\"batch\":50") && strstr(back.training, "x\\\"y"),
	   "training settings round-trip: %s", back.training ? back.training : "(none)");
	pipar_model_free(r);
	pipar_checkpoint_info_free(&back);
	{
		struct stat st;
		int sr = stat(path, &st);

		ok(sr == 0 && (st.st_mode & 0444) == 0444,
		   "the file is readable by others under the usual umask (mode %03o)",
		   (unsigned)(st.st_mode & 0777));
	}

	/* Without momentum, and a unit holding the same role twice. */
	{
		const char *twice = "{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":["
				    "{\"type\":\"conv\",\"out\":4,\"kernel\":3},{\"type\":\"relu\"},"
				    "{\"type\":\"conv\",\"out\":4,\"kernel\":3}]},{\"layers\":"
				    "[{\"type\":\"flatten\"},{\"type\":\"dense\",\"out\":\"classes\"}]}]}";
		struct pipar_model *t = model(twice, in, 3, 5);
		char p2[256];
		struct entry e[32];
		int n, named = 0;

		snprintf(p2, sizeof(p2), "%s/twice.npz", dir);
		ok(pipar_checkpoint_save(p2, t, &info, 0, err) == 0, "save without momentum");
		n = entries_read(p2, e, 32);
		for (int i = 0; i < n; i++)
			if (!strcmp(e[i].name, "u01.l01.conv.weight.npy") ||
			    !strcmp(e[i].name, "u01.l03.conv.weight.npy"))
				named++;
		ok(named == 2 && n == 1 + 4 + 2, "a role twice in a unit is named by layer (%d entries)", n);
		entries_free(e, n);
		ok(pipar_checkpoint_load(p2, &r, &back, err) == 0 && same_state(t, r, 0) &&
			   !back.has_momentum,
		   "and loads back exactly");
		pipar_model_free(r);
		pipar_checkpoint_info_free(&back);
		pipar_model_free(t);
	}

	/* Truncated at every byte of the head and at many points after. */
	{
		int bad = 0, cuts = 0;

		bytes = slurp(path, &len);
		for (size_t cut = 0; cut < len; cut += cut < 512 ? 1 : len / 997 + 1) {
			err[0] = 0;
			r = NULL;
			if (pipar_checkpoint_load_mem(bytes, cut, "cut.npz", &r, &back, err) == 0 ||
			    r != NULL || err[0] == 0) {
				if (bad < 5)
					diag("cut at %zu: %s", cut, r ? "loaded" : "no message");
				bad++;
				pipar_model_free(r);
				pipar_checkpoint_info_free(&back);
			}
			cuts++;
		}
		ok(bad == 0 && cuts > 1000, "truncated at %d points of %zu bytes: all refused", cuts, len);
		ok(pipar_checkpoint_load_mem(bytes, len, "whole.npz", &r, &back, err) == 0,
		   "the whole file loads from memory");
		pipar_model_free(r);
		pipar_checkpoint_info_free(&back);
		free(bytes);
	}

	refused(path, "a missing array", "is missing", drop_array);
	refused(path, "an extra entry", "unexpected entry 'notes.txt'", extra_entry);
	refused(path, "a manifest that is not first", "first entry", swap_order);
	refused(path, "a float64 array", "u01.conv.weight': dtype", dtype_f8);
	refused(path, "a Fortran-order array", "C order", fortran);
	refused(path, "an array with too few bytes", "holds 1148 bytes of data, its shape needs 1152",
		short_data);
	refused(path, "a NaN", "non-finite", nan_value);
	man_from = "\"pipar-checkpoint/1\"";
	man_to = "\"pipar-checkpoint/9\"";
	refused(path, "another format version",
		"pipar.json is a pipar-checkpoint/9 file, expected pipar-checkpoint/1", manifest_edit);
	man_from = "\"epoch\":";
	man_to = "\"colour\":1,\"epoch\":";
	refused(path, "an unknown manifest field", "unknown field 'colour'", manifest_edit);
	man_from = "\"out\":\t32";
	man_to = "\"out\":\t16";
	refused(path, "a spec that does not match the arrays", "u01.conv.weight': shape 32x1x3x3, the model needs 16x1x3x3",
		manifest_edit);
	man_from = "\"classes\":";
	man_to = "\"classes\":\"ten\",\"x\":";
	refused(path, "a bad field type", "unknown field 'x'", manifest_edit);
	/* Field values are refused by path, in the words of every reader. */
	man_from = "\"classes\":\t10";
	man_to = "\"classes\":\t2.5";
	refused(path, "a class count that is not whole",
		"bad.npz': pipar.json: field 'classes': 2.5 is not an integer", manifest_edit);
	man_from = "\"std\":\t[0.375]";
	man_to = "\"std\":\t[0]";
	refused(path, "a zero standard deviation",
		"pipar.json: field 'normalisation.std[0]': 0 outside [1e-30, 1e+30]", manifest_edit);
	man_from = "\"mean\":\t[0.25]";
	man_to = "\"mean\":\t[1e39]";
	refused(path, "a mean that is no float",
		"pipar.json: field 'normalisation.mean[0]': 1e+39 outside [-1e+30, 1e+30]", manifest_edit);
	man_from = "\"units\":\t[1, 5]";
	man_to = "\"units\":\t[5, 1]";
	refused(path, "units in the wrong order",
		"pipar.json: field 'units': the last unit is before the first", manifest_edit);
	man_from = "\"input\":\t[1, 12, 12]";
	man_to = "\"input\":\t[1, 12]";
	refused(path, "an input shape of two numbers",
		"pipar.json: field 'input': not an array of 3 integers", manifest_edit);
	/* A run to resume: an object kept as it is, and flat arrays. */
	{
		char rp[256];
		float a1[5] = {1, -2, 3.5f, 0, 1e-20f}, a3[3] = {7, 8, 9};
		struct pipar_ckpt_array ra[2] = {{"d001.momentum", 5, a1}, {"d003.momentum", 3, a3}};
		struct pipar_ckpt_info ri = info;

		snprintf(rp, sizeof(rp), "%s/run.npz", dir);
		ri.run = "{\"format\":\"pipar-run/1\",\"devices\":[1,null]}";
		ri.nrun = 2;
		ri.arrays = ra;
		ok(pipar_checkpoint_save(rp, m, &ri, 0, err) == 0, "save with a run: %s", err);
		ok(pipar_checkpoint_load(rp, &r, &back, err) == 0 && same_state(m, r, 0),
		   "a checkpoint with a run loads as a model: %s", r ? "ok" : err);
		ok(back.run && !strcmp(back.run, ri.run) && back.nrun == 2 &&
			   !strcmp(back.arrays[0].name, "d001.momentum") && back.arrays[0].count == 5 &&
			   !memcmp(back.arrays[0].data, a1, sizeof(a1)) && back.arrays[1].count == 3 &&
			   !memcmp(back.arrays[1].data, a3, sizeof(a3)),
		   "the run and its arrays round-trip exactly");
		pipar_model_free(r);
		r = NULL;
		pipar_checkpoint_info_free(&back);
		ok(pipar_checkpoint_load(path, &r, &back, err) == 0 && !back.run && !back.nrun,
		   "a checkpoint without a run has none");
		pipar_model_free(r);
		r = NULL;
		pipar_checkpoint_info_free(&back);
		snprintf(ra[1].name, sizeof(ra[1].name), "D003");
		ok(pipar_checkpoint_save(rp, m, &ri, 0, err) < 0 && strstr(err, "run array 2 is malformed"),
		   "a run array named outside [a-z0-9._-] is not written: %s", err);
		snprintf(ra[1].name, sizeof(ra[1].name), "d003.momentum");
		ri.run = "[1]";
		ok(pipar_checkpoint_save(rp, m, &ri, 0, err) < 0 && strstr(err, "not a JSON object"),
		   "a run that is not an object is not written: %s", err);
		ri.run = "{\"format\":\"pipar-run/1\",\"devices\":[1,null]}";
		PIPAR_ASSERT(pipar_checkpoint_save(rp, m, &ri, 0, err) == 0);
		{
			struct entry e[128];
			int n = entries_read(rp, e, 128), last = n - 1;

			ok(n > 3 && !strcmp(e[last].name, "run/d003.momentum.npy") &&
				   e[last].size == 128 + 12,
			   "a run's arrays are entries run/NAME.npy after the model's (%s)",
			   n > 0 ? e[last].name : "none");
			entries_free(e, n);
		}
		refused(rp, "a run array missing", "array 'run/d003.momentum' is missing", drop_last);
		refused(rp, "a run entry not listed", "unexpected entry 'run/zz.npy'", extra_run_entry);
		man_from = "\"shape\":\t[3]";
		man_to = "\"shape\":\t[4]";
		refused(rp, "a run array shorter than listed", "run/d003.momentum': shape 3, the model needs 4",
			manifest_edit);
		man_from = "\"d003.momentum\"";
		man_to = "\"d001.momentum\"";
		refused(rp, "a run array listed twice", "field 'run_arrays[1]': a name listed twice",
			manifest_edit);
		man_from = "\"d001.momentum\"";
		man_to = "\"../d001\"";
		refused(rp, "a run array named with a path", "field 'run_arrays[0]'", manifest_edit);
		/* Renamed to a field seen before, which the reader takes. */
		man_from = "\"run\":";
		man_to = "\"rng\":";
		refused(rp, "run_arrays without a run", "field 'run': missing beside run_arrays", manifest_edit);
		man_from = "\"run_arrays\":";
		man_to = "\"arrays\":";
		refused(rp, "a run without run_arrays", "field 'run_arrays': missing beside run", manifest_edit);
		man_from = "\"shape\":\t[5]";
		man_to = "\"shape\":\t[0]";
		refused(rp, "an empty run array", "run_arrays[0].shape[0]", manifest_edit);
	}
	{
		err[0] = 0;
		ok(pipar_checkpoint_load("/nonexistent/m.npz", &r, &back, err) < 0 &&
			   strstr(err, "/nonexistent/m.npz"),
		   "a missing file is refused by name: %s", err);
	}

	/* A write that fails part-way (the file size limit) leaves the old
	 * checkpoint as it was and no temporary file behind. */
	{
		pid_t pid = fork();
		int status = 0;

		if (pid == 0) {
			struct rlimit rl = {65536, 65536};
			struct pipar_model *r2 = NULL;
			struct pipar_ckpt_info b2;

			signal(SIGXFSZ, SIG_IGN);
			setrlimit(RLIMIT_FSIZE, &rl);
			float keep = m->units[0].data[0];

			m->units[0].data[0] += 1.0f;
			if (pipar_checkpoint_save(path, m, &info, 1, err) == 0)
				_exit(10);
			if (!strstr(err, path))
				_exit(11);
			m->units[0].data[0] = keep;
			if (pipar_checkpoint_load(path, &r2, &b2, err) < 0) {
				fprintf(stderr, "# %s\n", err);
				_exit(12);
			}
			if (!same_state(m, r2, 1))
				_exit(13);
			_exit(0);
		}
		waitpid(pid, &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "a write that fails leaves the old checkpoint intact (child status %d)",
		   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		char cmd[512];
		snprintf(cmd, sizeof(cmd), "ls -A %s | grep -q tmp", dir);
		ok(system(cmd) != 0, "and removes its temporary file");
		snprintf(path, sizeof(path), "%s/no/such/dir/m.npz", dir);
		ok(pipar_checkpoint_save(path, m, &info, 1, err) < 0 && strstr(err, "no/such/dir"),
		   "a write into a missing directory is refused: %s", err);
	}
	pipar_model_free(m);
	{
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			diag("could not remove %s", dir);
	}
	return tap_done();
}
