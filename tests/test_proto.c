/*
 * test_proto: the control payloads (proto.h) round-trip, and each decoder
 * refuses what the receiver must not take, naming the field; the plan's
 * own writer and reader (plan.h) give back the same struct.
 */
#define _POSIX_C_SOURCE 200809L
#include "plan.h"
#include "proto.h"
#include "tap.h"
#include "util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPEC "{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"flatten\"}," \
	     "{\"type\":\"dense\",\"out\":8}]},{\"layers\":[{\"type\":\"dense\",\"out\":\"classes\"}]}]}"

static int hello_refused(const char *json, int channels, const char *want)
{
	struct pipar_hello h;
	char err[PIPAR_ERRLEN] = "";
	int r = pipar_hello_decode((const uint8_t *)json, strlen(json), channels, 60000, &h, err);

	if (r == 0 || !strstr(err, want))
		diag("'%s': %d '%s'", json, r, err);
	return r < 0 && strstr(err, want) != NULL;
}

/* A small plan: two devices, P = 1, N = 3 and 2 with uneven sizes. */
static struct pipar_plan_file *small_plan(void)
{
	struct pipar_plan_file *p = calloc(1, sizeof(*p));
	static const int m0[] = {5, 3, 2}, m1[] = {6, 4};

	p->mode = PIPAR_MODE_PIPAR;
	strcpy(p->model_name, "tiny");
	p->spec = strdup(SPEC);
	p->in = (struct pipar_shape){1, 4, 4};
	p->classes = 3;
	p->units = 2;
	p->K = 2;
	p->batch = 10;
	p->samples = 100;
	p->up_bps = 5e7;
	p->down_bps = 2.5e7;
	p->dev[0] = (struct pipar_choice){1, 3};
	p->dev[1] = (struct pipar_choice){1, 2};
	p->micro[0] = malloc(sizeof(m0));
	p->micro[1] = malloc(sizeof(m1));
	memcpy(p->micro[0], m0, sizeof(m0));
	memcpy(p->micro[1], m1, sizeof(m1));
	p->iteration = 0.25;
	p->epoch = 2.5;
	return p;
}

static int plan_msg_refused(const char *from, const char *to, const char *want)
{
	struct pipar_plan_file *p = small_plan(), *back = NULL;
	struct pipar_settings st = {1, 3, {0.01f, 0.9f, 0}, 7, 0, 1.5, 1, 1, 0}, bs;
	char *text = pipar_plan_msg_encode(p, &st), *at, *edited;
	char err[PIPAR_ERRLEN] = "";
	int r = 0;

	if (text && (at = strstr(text, from))) {
		size_t pre = (size_t)(at - text);

		edited = malloc(strlen(text) + strlen(to) + 1);
		memcpy(edited, text, pre);
		strcpy(edited + pre, to);
		strcat(edited, at + strlen(from));
		r = pipar_plan_msg_decode((const uint8_t *)edited, strlen(edited), &back, &bs, err) < 0 &&
		    !back && strstr(err, want);
		if (!r)
			diag("%s -> %s: '%s'", from, to, err);
		free(edited);
	} else {
		diag("'%s' not in the message", from);
	}
	free(text);
	pipar_plan_file_free(p);
	pipar_plan_file_free(back);
	return r;
}

int main(void)
{
	char err[PIPAR_ERRLEN];

	/* HELLO */
	{
		struct pipar_hello h = {"device-7", 1234, {2, {0.25f, -0.5f}, {0.125f, 2}}, 3}, b;
		char *t = pipar_hello_encode(&h);

		ok(t && pipar_hello_decode((const uint8_t *)t, strlen(t), 2, 60000, &b, err) == 0 &&
			   strcmp(b.id, "device-7") == 0 && b.samples == 1234 && b.norm.channels == 2 &&
			   b.norm.mean[1] == -0.5f && b.norm.std[0] == 0.125f && b.device == 3,
		   "HELLO round-trips: %s", t ? t : "(null)");
		free(t);
	}
	{
		char json[200];

		snprintf(json, sizeof(json), "{\"id\":\"%064d\",\"samples\":1,\"norm\":{\"mean\":[0],\"std\":[1]}}", 5);
		ok(hello_refused(json, 1, "field 'id': 64 bytes, not 1 to 63"),
		   "an id of 64 bytes is refused, not cut");
	}
	ok(hello_refused("{\"id\":\"a\\nb\",\"samples\":1,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1,
			 "field 'id': byte 2 (0x0a) is not a letter"),
	   "an id holding a line break is refused: it could forge a log line");
	ok(hello_refused("{\"id\":\"\",\"samples\":1,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1,
			 "field 'id': 0 bytes"),
	   "an empty id is refused");
	ok(hello_refused("{\"id\":\"a\",\"samples\":60001,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1,
			 "field 'samples': 60001 outside [1, 60000]"),
	   "more samples than the plan's devices hold together is refused: a FedAvg weight is bounded");
	ok(hello_refused("{\"id\":\"a\",\"samples\":2.5,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1,
			 "field 'samples': not an integer"),
	   "a fraction of a sample is refused");
	ok(hello_refused("[1]", 1, "not a JSON object"), "HELLO that is not an object is refused");
	ok(hello_refused("{\"id\":\"a\",\"samples\":1,\"device\":-1,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1,
			 "field 'device': -1 outside [0, 65535]"),
	   "HELLO asking for device -1 is refused");
	{
		struct pipar_hello b;
		const char *j = "{\"id\":\"a\",\"samples\":1,\"norm\":{\"mean\":[0],\"std\":[1]}}";

		ok(pipar_hello_decode((const uint8_t *)j, strlen(j), 1, 10, &b, err) == 0 && b.device == -1,
		   "a HELLO without 'device' asks for none");
	}
	ok(hello_refused("{\"samples\":1,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1, "field 'id'"),
	   "HELLO without an id is refused naming 'id'");
	ok(hello_refused("{\"id\":\"a\",\"samples\":0,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1, "field 'samples'"),
	   "HELLO with 0 samples is refused naming 'samples'");
	ok(hello_refused("{\"id\":\"a\",\"samples\":1e12,\"norm\":{\"mean\":[0],\"std\":[1]}}", 1, "field 'samples': 1e+12 outside"),
	   "HELLO with 10^12 samples is refused");
	ok(hello_refused("{\"id\":\"a\",\"samples\":5,\"norm\":{\"mean\":[0],\"std\":[1]}}", 3, "field 'norm'"),
	   "HELLO with the wrong number of channels is refused naming 'norm'");
	ok(hello_refused("{\"id\":\"a\",\"samples\":5,\"norm\":{\"mean\":[1e39],\"std\":[1]}}", 1, "field 'norm.mean[0]': 1e+39 outside"),
	   "HELLO with a mean beyond a float's range is refused");
	ok(hello_refused("{\"id\":\"a\",\"samples\":5,\"norm\":{\"mean\":[0],\"std\":[1e-50]}}", 1, "field 'norm.std[0]'"),
	   "HELLO with a standard deviation that is 0 as a float is refused");
	ok(hello_refused("{\"id\":\"a\",\"samples\":5,\"norm\":{\"mean\":[0],\"std\":[-1]}}", 1, "field 'norm.std[0]': -1 outside"),
	   "HELLO with a negative standard deviation is refused");

	/* The plan's writer and reader. */
	{
		struct pipar_plan_file *p = small_plan(), *b = NULL;
		cJSON *j = pipar_plan_file_json(p);
		int same = j && pipar_plan_from_json(j, "t", &b, err) == 0;

		if (!same)
			diag("%s", err);

		same = same && b->mode == p->mode && strcmp(b->model_name, "tiny") == 0 && b->K == 2 &&
		       b->batch == 10 && b->samples == 100 && b->up_bps == 5e7 && b->down_bps == 2.5e7 &&
		       b->units == 2 && b->classes == 3 && b->iteration == 0.25 && b->epoch == 2.5;
		for (int k = 0; same && k < 2; k++) {
			same = b->dev[k].P == p->dev[k].P && b->dev[k].N == p->dev[k].N;
			for (int i = 0; same && i < p->dev[k].N; i++)
				same = b->micro[k][i] == p->micro[k][i];
		}
		ok(same, "a plan written by pipar_plan_file_json reads back the same, uneven micro-batches included");
		ok(b && pipar_plan_max_micro(b, 0) == 5 && pipar_plan_max_micro(b, 1) == 6,
		   "the largest micro-batch of each device is its plan's");
		cJSON_Delete(j);
		pipar_plan_file_free(b);
		pipar_plan_file_free(p);
	}
	{
		int sum = 0, even = 1;

		for (int i = 0; i < 7; i++) {
			int n = pipar_plan_micro_size(100, 7, i);

			sum += n;
			even &= n == 14 || n == 15;
		}
		ok(sum == 100 && even && pipar_plan_micro_size(100, 7, 0) == 15 &&
			   pipar_plan_micro_size(100, 7, 6) == 14,
		   "near-equal micro-batches: 100 in 7 are 15 (twice) and 14, summing to 100");
	}

	/* PLAN */
	{
		struct pipar_plan_file *p = small_plan(), *b = NULL;
		struct pipar_settings st = {1, 3, {0.01f, 0.9f, 0.0005f}, 123456789, 4, 77.5, 2, 1, 0}, bs;
		char *t = pipar_plan_msg_encode(p, &st);

		ok(t && pipar_plan_msg_decode((const uint8_t *)t, strlen(t), &b, &bs, err) == 0 &&
			   bs.device == 1 && bs.epochs == 3 && bs.sgd.lr == 0.01f && bs.sgd.momentum == 0.9f &&
			   bs.sgd.weight_decay == 0.0005f && bs.seed == 123456789 && bs.aggregate_every == 4 &&
			   bs.server_time == 77.5 && bs.first_epoch == 2 && bs.state_up == 1 &&
			   bs.state_down == 0 && b->K == 2 && b->micro[0][0] == 5,
		   "PLAN round-trips the plan and the settings");
		free(t);
		pipar_plan_file_free(b);
		pipar_plan_file_free(p);
	}
	ok(plan_msg_refused("\"device\":1,\"epochs\"", "\"device\":2,\"epochs\"", "field 'device'"),
	   "PLAN for a device beyond the plan's is refused naming 'device'");
	ok(plan_msg_refused("\"epochs\":3", "\"epochs\":3,\"first_epoch\":4", "field 'first_epoch'"),
	   "PLAN that starts a device after the last epoch is refused");
	ok(plan_msg_refused("\"state_up\":true", "\"state_up\":1", "field 'state_up'"),
	   "PLAN whose state_up is not a boolean is refused naming it");
	ok(plan_msg_refused("\"lr\":0.0", "\"lr\":-1,\"x\":0.0", "field 'lr'"),
	   "PLAN with a negative learning rate is refused naming 'lr'");
	ok(plan_msg_refused("\"epochs\":3", "\"epochs\":1.5", "not an integer"),
	   "PLAN with a fractional epoch count is refused");
	ok(plan_msg_refused("\"micro_batches\":[5,3,2]", "\"micro_batches\":[5,3,3]", "micro_batches"),
	   "PLAN whose micro-batches do not sum to the batch is refused naming them");
	ok(plan_msg_refused("\"format\":\"pipar-plan/1\"", "\"format\":\"pipar-profile/1\"", "is a pipar-profile/1 file, expected pipar-plan/1"),
	   "PLAN holding a document of another kind is refused naming the kind");
	ok(plan_msg_refused("{\"plan\":", "{\"plan\":7,\"x\":", "no plan"),
	   "PLAN without a plan object is refused");

	/* PARAMS_UP head */
	{
		struct pipar_up_head h = {100, 80, 41.5f, {1.5f, 0.25f, 0}, 1, 0}, b;
		uint8_t buf[PIPAR_UP_HEAD + 8];

		memset(buf, 0xff, sizeof(buf));
		pipar_up_head_encode(&h, buf);
		ok(pipar_up_head_decode(buf, sizeof(buf), 2, 1, &b, err) == 0 && b.seen == 100 &&
			   b.correct == 80 && b.loss == 41.5f && b.busy[0] == 1.5f && b.busy[1] == 0.25f &&
			   b.mid == 1,
		   "the PARAMS_UP head round-trips");
		ok(pipar_up_head_decode(buf, sizeof(buf), 3, 1, &b, err) < 0 && strstr(err, "expected 44"),
		   "a PARAMS_UP of the wrong length is refused with the length expected");
		h.correct = 101;
		pipar_up_head_encode(&h, buf);
		ok(pipar_up_head_decode(buf, sizeof(buf), 2, 1, &b, err) < 0, "more correct than seen is refused");
		h.correct = 1;
		h.loss = NAN;
		pipar_up_head_encode(&h, buf);
		ok(pipar_up_head_decode(buf, sizeof(buf), 2, 1, &b, err) < 0, "a non-finite loss is refused");
		h.loss = 0;
		h.busy[2] = -1;
		pipar_up_head_encode(&h, buf);
		ok(pipar_up_head_decode(buf, sizeof(buf), 2, 1, &b, err) < 0, "a negative busy time is refused");
		h.busy[2] = 0;
		h.mid = 2;
		pipar_up_head_encode(&h, buf);
		ok(pipar_up_head_decode(buf, sizeof(buf), 2, 1, &b, err) < 0, "a mid word of 2 is refused");
		h.mid = 0;
		pipar_up_head_encode(&h, buf);
		buf[30] = 1;
		ok(pipar_up_head_decode(buf, sizeof(buf), 2, 1, &b, err) < 0, "a state word of 65536 is refused");
		h.state = 1;
		pipar_up_head_encode(&h, buf);
		ok(pipar_up_head_decode(buf, sizeof(buf), 1, 1, &b, err) == 0 && b.state == 1,
		   "a PARAMS_UP with momentum holds the state's floats and then the momentum's");
		ok(pipar_up_head_decode(buf, sizeof(buf), 2, 1, &b, err) < 0 && strstr(err, "expected 44"),
		   "a PARAMS_UP saying momentum follows is refused without room for it");
	}
	return tap_done();
}
