/*
 * csulcca_trace.c: a tracing stand-in for libcsulcca.so, for tests/ock381.
 *
 * openCryptoki 3.8.1 dlopen()s the bare name "libcsulcca.so" (the CCA STDLL
 * inside each PKCS#11 application, and pkcscca). The harness builds this file
 * as $WORK/trace/libcsulcca.so and puts that directory first on
 * LD_LIBRARY_PATH; every verb below logs its name, its rule array and 8-byte
 * keyword parameters, and the lengths it is given, then forwards the call to
 * the real library named by CSULCCA_TRACE_REAL, then logs the return and
 * reason codes (and the rule array again, for verbs such as CSUACFQ that
 * return data in it). One line per event, appended to CSULCCA_TRACE_LOG.
 *
 * Every CCA verb takes only pointers and returns void, so on x86_64 (System V
 * ABI, caller cleans the stack) each stand-in is declared with 30 pointer
 * parameters, the largest arity among the verbs 3.8.1 resolves, and passes
 * all 30 on: the callee reads only its own, and the extra slots we read are
 * the caller's frame, which is mapped. The table gives, per verb, its real
 * arity, the index of rule_array_count (rule_array follows it), up to four
 * indices of 8-byte keyword parameters, and up to six indices of long length
 * parameters (from the CCA verb signatures; cca.md section 4).
 *
 * A verb the real library does not export is logged as MISSING and answered
 * with return code 16, reason 336 (cca.md 7.1).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct verb {
	const char *name;
	int nargs;
	int rule_count;   /* index of rule_array_count, or -1 */
	int kw[4];        /* indices of 8-byte keyword parameters, -1 = none */
	int len[6];       /* indices of long length parameters, -1 = none */
};

#define P30 void *a0, void *a1, void *a2, void *a3, void *a4, void *a5, \
	void *a6, void *a7, void *a8, void *a9, void *a10, void *a11, \
	void *a12, void *a13, void *a14, void *a15, void *a16, void *a17, \
	void *a18, void *a19, void *a20, void *a21, void *a22, void *a23, \
	void *a24, void *a25, void *a26, void *a27, void *a28, void *a29
#define A30 a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, \
	a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24, a25, a26, \
	a27, a28, a29
typedef void (*fn30_t)(P30);

static void *real_lib;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int log_fd = -1;

static void open_real(void)
{
	const char *path = getenv("CSULCCA_TRACE_REAL");
	const char *logp = getenv("CSULCCA_TRACE_LOG");

	if (logp)
		log_fd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (path)
		real_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!real_lib && log_fd >= 0)
		dprintf(log_fd, "%d TRACE cannot load CSULCCA_TRACE_REAL=%s: %s\n",
			(int)getpid(), path ? path : "(unset)", dlerror());
}

/* Printable copy of n bytes: NUL shown as '~', other non-printables as '.'. */
static void show(char *out, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = p[i] == 0 ? '~' : (p[i] < 0x20 || p[i] > 0x7e) ? '.' : (char)p[i];
	out[n] = 0;
}

static void say(const struct verb *v, const char *what, void **a, int after)
{
	/* At most ~700 characters: 32 keywords, 4 keywords, 6 lengths with 16-byte dumps. */
	char line[4096], buf[8 * 32 + 1];
	int n = 0, i;

	if (log_fd < 0)
		return;
	n += snprintf(line + n, sizeof(line) - n, "%d %s %s", (int)getpid(), v->name, what);
	if (after)
		n += snprintf(line + n, sizeof(line) - n, " rc=%ld rsn=%ld",
			      a[0] ? *(long *)a[0] : -1L, a[1] ? *(long *)a[1] : -1L);
	if (v->rule_count >= 0 && a[v->rule_count] && a[v->rule_count + 1]) {
		long c = *(long *)a[v->rule_count];
		if (c >= 0 && c <= 32) {
			show(buf, a[v->rule_count + 1], (size_t)c * 8);
			n += snprintf(line + n, sizeof(line) - n, " rules[%ld]='%s'", c, buf);
		} else {
			n += snprintf(line + n, sizeof(line) - n, " rules[%ld]=?", c);
		}
	}
	for (i = 0; i < 4 && !after; i++) {
		if (v->kw[i] >= 0 && a[v->kw[i]]) {
			show(buf, a[v->kw[i]], 8);
			n += snprintf(line + n, sizeof(line) - n, " kw%d='%s'", v->kw[i], buf);
		}
	}
	for (i = 0; i < 6; i++) {
		long l;
		int j;

		if (v->len[i] < 0 || !a[v->len[i]])
			continue;
		l = *(long *)a[v->len[i]];
		n += snprintf(line + n, sizeof(line) - n, " len%d=%ld", v->len[i], l);
		/* Small inputs (e.g. CSNDPKB's key value structure) in hex, to
		 * show byte order; never anything larger than 16 bytes. */
		if (!after && l > 0 && l <= 16 && v->len[i] + 1 < v->nargs && a[v->len[i] + 1]) {
			n += snprintf(line + n, sizeof(line) - n, "[");
			for (j = 0; j < l; j++)
				n += snprintf(line + n, sizeof(line) - n, "%02x",
					      ((unsigned char *)a[v->len[i] + 1])[j]);
			n += snprintf(line + n, sizeof(line) - n, "]");
		}
	}
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(log_fd, line, n);
}

static void call(const struct verb *v, void **a, void **slot)
{
	fn30_t fn;

	pthread_once(&once, open_real);
	say(v, ">", a, 0);
	if (!*slot && real_lib)
		*slot = dlsym(real_lib, v->name);
	if (!*slot) {
		if (a[0])
			*(long *)a[0] = 16;
		if (a[1])
			*(long *)a[1] = 336;
		say(v, "< MISSING in the real library", a, 1);
		return;
	}
	fn = (fn30_t)*slot;
	fn(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
	   a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19], a[20],
	   a[21], a[22], a[23], a[24], a[25], a[26], a[27], a[28], a[29]);
	say(v, "<", a, 1);
}

#define V(name, nargs, rc, k0, k1, k2, k3, l0, l1, l2, l3, l4, l5)          \
	void name(P30)                                                        \
	{                                                                     \
		static const struct verb v = { #name, nargs, rc,              \
			{ k0, k1, k2, k3 }, { l0, l1, l2, l3, l4, l5 } };     \
		static void *real;                                            \
		void *a[30] = { A30 };                                        \
		call(&v, a, &real);                                           \
	}

/* name, arity, rule_array_count index, keyword indices, length indices */
V(CSNBAKRC, 7, -1, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1)
V(CSNBCKI, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBCKM, 9, 4, -1, -1, -1, -1, 6, -1, -1, -1, -1, -1)
V(CSNBCPA, 14, 9, -1, -1, -1, -1, 11, -1, -1, -1, -1, -1)
V(CSNBCPE, 12, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBCSG, 12, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBCSV, 12, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBCVE, 9, -1, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1)
V(CSNBCVG, 9, 5, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBCVT, 13, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBDEC, 12, 8, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1)
V(CSNBDKG, 11, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSNBDKM, 7, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBDKX, 7, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBENC, 13, 8, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1)
V(CSNBEPG, 14, 6, -1, -1, -1, -1, 8, -1, -1, -1, -1, -1)
V(CSNBHMG, 14, 4, -1, -1, -1, -1, 6, 8, 10, 12, -1, -1)
V(CSNBHMV, 14, 4, -1, -1, -1, -1, 6, 8, 10, 12, -1, -1)
V(CSNBKET, 12, 4, -1, -1, -1, -1, 6, 8, 10, -1, -1, -1)
V(CSNBKEX, 8, -1, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKGN, 12, -1, 4, 5, 6, 7, -1, -1, -1, -1, -1, -1)
V(CSNBKGN2, 25, 4, 7, 8, -1, -1, 6, 9, 11, 13, 15, 17)
V(CSNBKIM, 8, -1, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKPI, 8, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKPI2, 10, 4, -1, -1, -1, -1, 6, 8, -1, -1, -1, -1)
V(CSNBKRC, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKRD, 7, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKRL, 8, -1, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1)
V(CSNBKRR, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKRW, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKSI, 11, 4, -1, -1, -1, -1, 6, 8, -1, -1, -1, -1)
V(CSNBKTB, 17, 6, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKTB2, 18, 4, -1, -1, -1, -1, 6, 8, 10, 12, 14, 16)
V(CSNBKTC, 7, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKTC2, 8, 4, -1, -1, -1, -1, 6, -1, -1, -1, -1, -1)
V(CSNBKTP, 17, 6, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKTR, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKYT, 9, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBKYTX, 10, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBMDG, 10, 6, -1, -1, -1, -1, 4, -1, -1, -1, -1, -1)
V(CSNBMGN, 11, 7, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1)
V(CSNBMKP, 7, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBMVR, 11, 7, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1)
V(CSNBOWH, 12, 4, -1, -1, -1, -1, 6, 8, 10, -1, -1, -1)
V(CSNBPCU, 27, 4, -1, -1, -1, -1, 6, 8, 10, 12, 17, 22)
V(CSNBPEX, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBPEXX, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBPGN, 11, 5, -1, -1, -1, -1, 7, 8, -1, -1, -1, -1)
V(CSNBPTR, 15, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBPVR, 13, 9, -1, -1, -1, -1, 11, -1, -1, -1, -1, -1)
V(CSNBRNG, 6, -1, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNBSAD, 21, 4, -1, -1, -1, -1, 6, 8, 11, 13, 15, 17)
V(CSNBSAE, 21, 4, -1, -1, -1, -1, 6, 8, 11, 13, 15, 17)
V(CSNBSKY, 16, 4, -1, -1, -1, -1, 9, 13, -1, -1, -1, -1)
V(CSNBSPN, 20, 4, -1, -1, -1, -1, 13, 17, -1, -1, -1, -1)
V(CSNBTRV, 12, 4, -1, -1, -1, -1, 6, 8, 10, -1, -1, -1)
V(CSNDDSG, 13, 4, -1, -1, -1, -1, 6, 8, 10, 11, -1, -1)
V(CSNDDSV, 12, 4, -1, -1, -1, -1, 6, 8, 10, -1, -1, -1)
V(CSNDKRC, 9, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSNDKRD, 7, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNDKRL, 10, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSNDKRR, 9, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSNDKRW, 9, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSNDKTC, 8, 4, -1, -1, -1, -1, 6, -1, -1, -1, -1, -1)
V(CSNDPKB, 22, 4, -1, -1, -1, -1, 6, 10, 12, 14, 16, 18)
V(CSNDPKD, 14, 4, -1, -1, -1, -1, 6, 8, 10, 12, -1, -1)
V(CSNDPKE, 14, 4, -1, -1, -1, -1, 6, 8, 10, 12, -1, -1)
V(CSNDPKG, 13, 4, -1, -1, -1, -1, 6, 8, 11, -1, -1, -1)
V(CSNDPKH, 9, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSNDPKI, 11, 4, -1, -1, -1, -1, 6, 9, -1, -1, -1, -1)
V(CSNDPKR, 9, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSNDPKX, 10, 4, -1, -1, -1, -1, 6, 8, -1, -1, -1, -1)
V(CSNDRKD, 7, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNDRKL, 10, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
V(CSNDRKX, 30, 4, -1, -1, -1, -1, 6, 8, 10, 12, 14, 16)
V(CSNDSBC, 22, 4, -1, -1, -1, -1, 7, 9, 11, 14, 16, 18)
V(CSNDSBD, 22, 4, -1, -1, -1, -1, 6, 8, 11, 13, 16, 20)
V(CSNDSYG, 13, 4, -1, -1, -1, -1, 7, 9, 11, -1, -1, -1)
V(CSNDSYI, 12, 4, -1, -1, -1, -1, 6, 10, -1, -1, -1, -1)
V(CSNDSYX, 12, 4, -1, -1, -1, -1, 6, 10, -1, -1, -1, -1)
V(CSNDTBC, 11, 4, -1, -1, -1, -1, 6, 9, -1, -1, -1, -1)
V(CSUAACI, 10, 4, -1, -1, -1, -1, 6, 8, -1, -1, -1, -1)
V(CSUAACM, 9, 4, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1)
V(CSUACFC, 8, 4, -1, -1, -1, -1, 6, -1, -1, -1, -1, -1)
V(CSUACFQ, 8, 4, -1, -1, -1, -1, 6, -1, -1, -1, -1, -1)
V(CSUACRA, 8, 4, -1, -1, -1, -1, 6, -1, -1, -1, -1, -1)
V(CSUACRD, 8, 4, -1, -1, -1, -1, 6, -1, -1, -1, -1, -1)
V(CSUADHK, 15, 4, -1, -1, -1, -1, 9, -1, -1, -1, -1, -1)
V(CSUADHQ, 15, 4, -1, -1, -1, -1, 9, -1, -1, -1, -1, -1)
V(CSUALCT, 11, 4, -1, -1, -1, -1, 7, 9, -1, -1, -1, -1)
V(CSUAMKD, 15, 4, -1, -1, -1, -1, 9, 11, 13, -1, -1, -1)
V(CSUAPCV, 12, 4, -1, -1, -1, -1, 6, 8, 10, -1, -1, -1)
V(CSUAPRB, 12, 4, -1, -1, -1, -1, 6, 8, 10, -1, -1, -1)
V(CSUARNT, 6, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
