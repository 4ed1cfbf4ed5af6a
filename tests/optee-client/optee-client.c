/*
 * optee-client: our own small client of OP-TEE through Linux's TEE subsystem
 * (the `optee` stage, xtask/src/optee.rs; docs/optee.md). Static, for the
 * initramfs; talks to /dev/tee0 with the TEE ioctls of <linux/tee.h> only.
 *
 * On the core given as argv[1] (pinned there): opens a session to OP-TEE's
 * built-in "invoke tests" pseudo-TA, invokes its PARAMS command with value
 * arguments and with a shared-memory buffer (Linux shares that buffer with
 * OP-TEE through FF-A, that is through our SPMC), closes the session.
 * Prints one `PASS <name>` or `FAIL <name>: <why>` line per check.
 *
 * `optee-client bench` (the stage's second boot, under QEMU's
 * `-icount shift=0`, where the virtual counter advances one nanosecond per
 * instruction): times each of BENCH_CALLS invokes of the PARAMS command
 * with a value argument on core 0 by CNTVCT_EL0 around the ioctl and prints
 * the median as `bench: optee_invoke_round_trip: N instructions`. What is
 * timed is the whole call from user space: Linux's TEE ioctl and optee
 * driver, the SMC to EL3, our SPMC, OP-TEE's yielding call, and back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/tee.h>

/* The "invoke tests" pseudo-TA (OP-TEE's core/pta/tests/invoke.c, built
 * with CFG_ENABLE_EMBEDDED_TESTS): d96a5b40-c3e5-21e3-8794-1002a5d5c61b. */
static const uint8_t PTA_UUID[TEE_IOCTL_UUID_LEN] = {
	0xd9, 0x6a, 0x5b, 0x40, 0xc3, 0xe5, 0x21, 0xe3,
	0x87, 0x94, 0x10, 0x02, 0xa5, 0xd5, 0xc6, 0x1b,
};
#define CMD_PARAMS 1
#define SHM_SIZE 4096

static int failures;
static char label[32];

static void pass(const char *name)
{
	printf("PASS optee-%s-%s\n", name, label);
}

static void fail(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL optee-%s-%s: ", name, label);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failures++;
}

/* One TEE ioctl with `n` parameters after the fixed part of `arg`. */
struct call {
	union {
		struct tee_ioctl_open_session_arg open;
		struct tee_ioctl_invoke_arg invoke;
	};
	struct tee_ioctl_param params[4];
};

static int tee_call(int fd, unsigned long req, struct call *c, size_t fixed)
{
	struct tee_ioctl_buf_data buf = {
		.buf_ptr = (uintptr_t)c,
		.buf_len = fixed + 4 * sizeof(struct tee_ioctl_param),
	};
	/* The parameters follow the fixed part directly. */
	memmove((char *)c + fixed, c->params, 4 * sizeof(struct tee_ioctl_param));
	int r = ioctl(fd, req, &buf);
	memmove(c->params, (char *)c + fixed, 4 * sizeof(struct tee_ioctl_param));
	return r;
}

#define BENCH_WARMUP 20
#define BENCH_CALLS 200

static uint64_t counter(void)
{
	uint64_t v;

	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v) : : "memory");
	return v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One invoke of PARAMS with an in/out value (a := a + b); 0 if it worked. */
static int invoke_values(int fd, uint32_t session, uint64_t a)
{
	struct call c;

	memset(&c, 0, sizeof(c));
	c.invoke.func = CMD_PARAMS;
	c.invoke.session = session;
	c.invoke.num_params = 4;
	c.params[0].attr = TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_INOUT;
	c.params[0].a = a;
	c.params[0].b = 1;
	if (tee_call(fd, TEE_IOC_INVOKE, &c, sizeof(c.invoke)) || c.invoke.ret)
		return -1;
	return c.params[0].a == a + 1 ? 0 : -1;
}

/* The benchmark: never fails on a figure, says `failed` if a call did. */
static int bench(void)
{
	static uint64_t t[BENCH_CALLS];
	cpu_set_t set;
	uint64_t freq;
	struct call c;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	__asm__ volatile("mrs %0, cntfrq_el0" : "=r"(freq));
	int fd = open("/dev/tee0", O_RDWR);
	memset(&c, 0, sizeof(c));
	memcpy(c.open.uuid, PTA_UUID, sizeof(PTA_UUID));
	c.open.clnt_login = TEE_IOCTL_LOGIN_PUBLIC;
	c.open.num_params = 4;
	if (fd < 0 || tee_call(fd, TEE_IOC_OPEN_SESSION, &c, sizeof(c.open)) ||
	    c.open.ret != 0 || !freq) {
		printf("bench: optee_invoke_round_trip: failed (no session)\n");
		return 1;
	}
	uint32_t session = c.open.session;
	for (int i = 0; i < BENCH_WARMUP; i++)
		if (invoke_values(fd, session, i))
			goto failed;
	for (int i = 0; i < BENCH_CALLS; i++) {
		uint64_t start = counter();
		int r = invoke_values(fd, session, i);
		t[i] = counter() - start;
		if (r)
			goto failed;
	}
	qsort(t, BENCH_CALLS, sizeof(t[0]), cmp_u64);
	/* Counter ticks to nanoseconds: instructions under -icount shift=0. */
#define NS(x) ((x) / freq * 1000000000ull + (x) % freq * 1000000000ull / freq)
	printf("optee-client: bench: %d invokes, counter at %llu Hz, ns min %llu median %llu max %llu\n",
	       BENCH_CALLS, (unsigned long long)freq,
	       (unsigned long long)NS(t[0]),
	       (unsigned long long)NS(t[BENCH_CALLS / 2]),
	       (unsigned long long)NS(t[BENCH_CALLS - 1]));
	printf("bench: optee_invoke_round_trip: %llu instructions\n",
	       (unsigned long long)NS(t[BENCH_CALLS / 2]));
	struct tee_ioctl_close_session_arg cl = { .session = session };
	ioctl(fd, TEE_IOC_CLOSE_SESSION, &cl);
	close(fd);
	return 0;
failed:
	printf("bench: optee_invoke_round_trip: failed (an invoke failed)\n");
	return 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "bench"))
		return bench();

	int cpu = argc > 1 ? atoi(argv[1]) : 0;
	cpu_set_t set;

	snprintf(label, sizeof(label), "cpu%d", cpu);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) || sched_getcpu() != cpu) {
		fail("pin", "cannot run on core %d: %s", cpu, strerror(errno));
		return 1;
	}

	int fd = open("/dev/tee0", O_RDWR);
	if (fd < 0) {
		fail("open-dev", "/dev/tee0: %s", strerror(errno));
		return 1;
	}
	struct tee_ioctl_version_data ver = { 0 };
	if (ioctl(fd, TEE_IOC_VERSION, &ver) || ver.impl_id != TEE_IMPL_ID_OPTEE)
		fail("version", "TEE_IOC_VERSION: impl_id %u (%s)", ver.impl_id,
		     strerror(errno));
	else
		pass("version");

	/* Open a session (public login). */
	struct call c;
	memset(&c, 0, sizeof(c));
	memcpy(c.open.uuid, PTA_UUID, sizeof(PTA_UUID));
	c.open.clnt_login = TEE_IOCTL_LOGIN_PUBLIC;
	c.open.num_params = 4;
	if (tee_call(fd, TEE_IOC_OPEN_SESSION, &c, sizeof(c.open)) ||
	    c.open.ret != 0) {
		fail("open-session", "ioctl %s, ret %#x origin %u", strerror(errno),
		     c.open.ret, c.open.ret_origin);
		return 1;
	}
	uint32_t session = c.open.session;
	pass("open-session");

	/* Values: one in/out value, a := a + b. */
	memset(&c, 0, sizeof(c));
	c.invoke.func = CMD_PARAMS;
	c.invoke.session = session;
	c.invoke.num_params = 4;
	c.params[0].attr = TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_INOUT;
	c.params[0].a = 0x1000 + cpu;
	c.params[0].b = 0x20000;
	if (tee_call(fd, TEE_IOC_INVOKE, &c, sizeof(c.invoke)) || c.invoke.ret)
		fail("invoke-values", "ioctl %s, ret %#x origin %u",
		     strerror(errno), c.invoke.ret, c.invoke.ret_origin);
	else if (c.params[0].a != 0x21000u + cpu)
		fail("invoke-values", "a = %#llx, expected %#x",
		     (unsigned long long)c.params[0].a, 0x21000 + cpu);
	else
		pass("invoke-values");

	/* A shared-memory buffer: byte 0 := sum of all its bytes. */
	struct tee_ioctl_shm_alloc_data shm = { .size = SHM_SIZE };
	int shm_fd = ioctl(fd, TEE_IOC_SHM_ALLOC, &shm);
	uint8_t *buf = shm_fd < 0 ? MAP_FAILED :
		mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
	if (buf == MAP_FAILED) {
		fail("invoke-shm", "TEE_IOC_SHM_ALLOC/mmap: %s", strerror(errno));
	} else {
		uint8_t sum = 0;
		for (int i = 0; i < SHM_SIZE; i++) {
			buf[i] = (uint8_t)(i * 7 + cpu);
			sum += buf[i];
		}
		memset(&c, 0, sizeof(c));
		c.invoke.func = CMD_PARAMS;
		c.invoke.session = session;
		c.invoke.num_params = 4;
		c.params[0].attr = TEE_IOCTL_PARAM_ATTR_TYPE_MEMREF_INOUT;
		c.params[0].a = 0;		/* offset */
		c.params[0].b = SHM_SIZE;	/* size */
		c.params[0].c = shm.id;
		if (tee_call(fd, TEE_IOC_INVOKE, &c, sizeof(c.invoke)) ||
		    c.invoke.ret)
			fail("invoke-shm", "ioctl %s, ret %#x origin %u",
			     strerror(errno), c.invoke.ret, c.invoke.ret_origin);
		else if (buf[0] != sum)
			fail("invoke-shm", "byte 0 is %#x, expected the sum %#x",
			     buf[0], sum);
		else
			pass("invoke-shm");
		munmap(buf, SHM_SIZE);
		close(shm_fd);
	}

	struct tee_ioctl_close_session_arg cl = { .session = session };
	if (ioctl(fd, TEE_IOC_CLOSE_SESSION, &cl))
		fail("close-session", "%s", strerror(errno));
	else
		pass("close-session");
	close(fd);
	return failures ? 1 : 0;
}
