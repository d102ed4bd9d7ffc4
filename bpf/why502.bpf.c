// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * why502 kernel side: follows the TCP connections that watched processes
 * (nginx workers) open, and reports host-wide facts about the upstream side.
 *
 * Hot-path rule: a successful upstream connection costs one TGID lookup and a
 * few map updates; only failures and anomalies reach the ring buffer.
 * Only tracepoints (tp_btf; tp/ for syscalls): kprobes/fentry are not
 * available on every kernel users run (nor on our CI machines).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "why502/events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define EINPROGRESS 115
#define EMFILE 24
#define ENFILE 23
#define ENOBUFS 105
#define ENOMEM 12
#define ETIMEDOUT 110
#define PF_EXITING 0x00000004
#define PF_KTHREAD 0x00200000

/* Set by userspace before load. */
const volatile char comm_filters[WHY502_MAX_COMM_FILTERS][WHY502_COMM_LEN] = {};
const volatile __u32 n_comm_filters = 0;
/* Host-wide records (drops, resets sent, exits) allowed per CPU per second. */
const volatile __u32 host_records_per_sec = 2000;
/* Listen changes have their own budget: a reset storm must not hide who owned the port. */
const volatile __u32 listen_records_per_sec = 2000;

/* 4 MiB: ~25k failure records, over a second of a 16k/s 502 storm while userspace drains it.
 * The data area is mapped twice into why502 (for wrap-around) and every page is resident from the
 * start: 16 MiB here cost 32 MiB of RSS before any traffic. A full buffer is counted, never silent. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/* Never created, read or written (the loader turns off its autocreate): its value type keeps every
 * ABI struct of events.h in this object's BTF, so the C++ side checks each struct's size and field
 * offsets against what clang laid out here (tests/unit/abi_layout_test.cpp), as Tetragon's
 * alignchecker does. A struct added to events.h is added here. */
struct why502_abi_types {
	struct why502_header header;
	struct why502_tuple tuple;
	struct why502_conn_fail conn_fail;
	struct why502_syscall_err syscall_err;
	struct why502_drop drop;
	struct why502_reset_sent reset_sent;
	struct why502_oom_victim oom_victim;
	struct why502_signal signal;
	struct why502_exit exit;
	struct why502_watch watch;
	struct why502_listen_change listen_change;
	struct why502_unix_listener_exit unix_listener_exit;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct why502_abi_types);
} abi_types SEC(".maps");

/* TGIDs whose connections we follow; kept across fork in the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} watched SEC(".maps");

/* In-flight connections of watched processes, keyed by struct sock *. */
struct conn_info {
	__u32 pid;
	__u32 tid;
	char comm[WHY502_COMM_LEN];
	__u64 ts_syn_sent; /* boot ns */
	/* The next two are the socket's own TCP clock (tcp_clock_cache: CLOCK_MONOTONIC ns, refreshed
	 * when the packet that caused the transition was taken in), read where a clock read would cost
	 * ~40 ns (kvm-clock) on every successful connection; emit_conn_fail converts them to boot ns.
	 * 0: not reached. */
	__u64 mono_established;
	__u64 mono_fin_received;
	__u64 ts_reset;
	__u64 ts_error;
	__s32 sk_err;
	__u32 syn_retrans;
	__u32 retrans;
	__u16 reset_state;
	__u8 fin_received;
	__u8 pad;
};

/* Every loss, per site and CPU (enum why502_loss_site). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WHY502_LOSS_SITES);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

static __always_inline void count_loss(__u32 site)
{
	__u64 *n = bpf_map_lookup_elem(&losses, &site);

	if (n)
		*n += 1;
}

/* The connection table: a fixed array of buckets of eight socket cookies, and a parallel array of
 * conn_info, one per slot. Not socket-local storage: creating and deleting a storage element per
 * upstream connection (an allocation, two locks, an RCU free) was most of the program's cost: 266
 * ns/run against 158 with this table, 10 runs per proxied request (bench, bpf_stats, keepalive off;
 * docs/DESIGN.md). Array lookups are inlined by the verifier.
 *
 * Keyed by the socket's cookie, which on_inet_sock_set_state gives the socket at its SYN_SENT: a
 * socket starts with none (sk_alloc zeroes it, sk_clone_lock resets it), so every other socket
 * leaves on one load from struct sock (conn_find), and a followed one is found without a probe read
 * of its address (the verifier forbids arithmetic on the trusted pointer). That bought no measurable
 * time (making the cookie costs about what it saves; DESIGN.md); it is kept because a cookie is
 * never reused, so a stale entry cannot be taken for another socket, as a reused address could. A slot is claimed with a
 * compare-and-swap (two workers may connect at once on two CPUs) and freed at the socket's CLOSE,
 * which every TCP socket passes through before it is freed; a CLOSE the kernel skipped (a run
 * missed to recursion) would leave its entry behind, so a full bucket gives its oldest entry to the
 * new connection, counted as a loss (WHY502_LOSS_CONN_MAP), never silently. */
#define CONN_SLOTS_PER_BUCKET 8
/* Two candidate buckets per cookie: one among a few hot buckets, tried first, and one in the large
 * overflow. The hot part (4 KiB of buckets, 45 KiB of conn_info) can stay in cache, where a table
 * sized for 32768 connections alone puts each new connection on a random bucket and conn_info in
 * 3 MB. One A/B run with a 64-bucket table gave 146 → 126 ns/run; later runs of this layout were
 * inside the noise (DESIGN.md). */
#define CONN_HOT_BUCKETS 64
#define CONN_OVERFLOW_BUCKETS 4096
#define CONN_BUCKETS (CONN_HOT_BUCKETS + CONN_OVERFLOW_BUCKETS) /* 33280 connections in flight */

/* The buckets in use, powers of two no larger than the above: set by the loader before load, so
 * tests can fill a tiny table (TracerOptions::conn_table_buckets). */
const volatile __u32 conn_hot_buckets = CONN_HOT_BUCKETS;
const volatile __u32 conn_overflow_buckets = CONN_OVERFLOW_BUCKETS;

struct conn_bucket {
	__u64 cookie[CONN_SLOTS_PER_BUCKET]; /* socket cookie, 0 when free */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CONN_BUCKETS);
	__type(key, __u32);
	__type(value, struct conn_bucket);
} conn_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CONN_BUCKETS * CONN_SLOTS_PER_BUCKET);
	__type(key, __u32);
	__type(value, struct conn_info);
} conns SEC(".maps");

/* The socket's cookie without creating one: 0 for every socket nobody asked a cookie of. */
static __always_inline __u64 sock_cookie_if_any(const struct sock *sk)
{
	return sk->__sk_common.skc_cookie.counter;
}

/* Fibonacci hashing (cookies are handed out in per-CPU runs of consecutive numbers): the hot
 * bucket from the hash's low bits, the overflow bucket from its upper half. */
static __always_inline __u32 conn_hash(__u64 cookie)
{
	return (__u32)((cookie * 0x9E3779B97F4A7C15ULL) >> 32);
}

static __always_inline __u32 conn_hot_bucket(__u32 hash)
{
	return hash & (conn_hot_buckets - 1) & (CONN_HOT_BUCKETS - 1);
}

static __always_inline __u32 conn_overflow_bucket(__u32 hash)
{
	return CONN_HOT_BUCKETS + ((hash >> 16) & (conn_overflow_buckets - 1) & (CONN_OVERFLOW_BUCKETS - 1));
}

/* The slot holding this cookie in this bucket, or -1. */
static __always_inline long conn_slot_in_bucket(__u32 bucket, __u64 cookie)
{
	struct conn_bucket *b = bpf_map_lookup_elem(&conn_buckets, &bucket);

	if (!b)
		return -1;
#pragma unroll
	for (int i = 0; i < CONN_SLOTS_PER_BUCKET; i++) {
		if (b->cookie[i] == cookie)
			return bucket * CONN_SLOTS_PER_BUCKET + i;
	}
	return -1;
}

/* The followed connection with this cookie, or NULL; *slot_out names its slot. */
static __always_inline struct conn_info *conn_find_cookie(__u64 cookie, __u32 *slot_out)
{
	__u32 hash = conn_hash(cookie), slot;
	long found = conn_slot_in_bucket(conn_hot_bucket(hash), cookie);

	if (found < 0)
		found = conn_slot_in_bucket(conn_overflow_bucket(hash), cookie);
	if (found < 0)
		return NULL;
	slot = (__u32)found;
	*slot_out = slot;
	return bpf_map_lookup_elem(&conns, &slot);
}

/* The followed connection of this socket, or NULL; *slot_out names its slot for conn_release.
 * A socket without a cookie was never ours (someone else's cookie merely costs the lookup). */
static __always_inline struct conn_info *conn_find(const struct sock *sk, __u32 *slot_out)
{
	__u64 cookie = sock_cookie_if_any(sk);

	return cookie ? conn_find_cookie(cookie, slot_out) : NULL;
}

/* This cookie's slot in this bucket: the one it already holds (a socket connecting again after a
 * CLOSE the kernel skipped), else a free one taken; -1 if neither. */
static __always_inline long conn_take(__u32 bucket, __u64 cookie)
{
	long held = conn_slot_in_bucket(bucket, cookie);
	struct conn_bucket *b;

	if (held >= 0)
		return held;
	b = bpf_map_lookup_elem(&conn_buckets, &bucket);
	if (!b)
		return -1;
#pragma unroll
	for (int i = 0; i < CONN_SLOTS_PER_BUCKET; i++) {
		if (b->cookie[i] == 0 && __sync_val_compare_and_swap(&b->cookie[i], 0, cookie) == 0)
			return bucket * CONN_SLOTS_PER_BUCKET + i;
	}
	return -1;
}

/* Give the slot of this full bucket whose connection began longest ago to the cookie. */
static __always_inline long conn_take_oldest(__u32 bucket, __u64 cookie)
{
	struct conn_bucket *b = bpf_map_lookup_elem(&conn_buckets, &bucket);
	__u64 oldest = ~0ULL;
	int pick = 0;

	if (!b)
		return -1;
#pragma unroll
	for (int i = 0; i < CONN_SLOTS_PER_BUCKET; i++) {
		__u32 slot = bucket * CONN_SLOTS_PER_BUCKET + i;
		struct conn_info *ci = bpf_map_lookup_elem(&conns, &slot);

		if (ci && ci->ts_syn_sent < oldest) {
			oldest = ci->ts_syn_sent;
			pick = i;
		}
	}
	pick &= CONN_SLOTS_PER_BUCKET - 1;
	b->cookie[pick] = cookie;
	return bucket * CONN_SLOTS_PER_BUCKET + pick;
}

/* Claim a slot for a socket entering SYN_SENT: in its hot bucket, else its overflow bucket, else
 * the overflow bucket's oldest entry, counted, since either it was left behind by a skipped CLOSE or
 * the table is truly full and that connection is no longer followed. The overflow bucket (a cold
 * line) is read only when the hot one is full: a cookie held in the overflow is found there, one held
 * in the hot bucket before it, so conn_find always meets the entry claimed here first. */
static __always_inline struct conn_info *conn_claim(__u64 cookie)
{
	__u32 hash = conn_hash(cookie), slot;
	long got;

	if (!cookie)
		return NULL;
	got = conn_take(conn_hot_bucket(hash), cookie);
	if (got < 0)
		got = conn_take(conn_overflow_bucket(hash), cookie);
	if (got < 0) {
		count_loss(WHY502_LOSS_CONN_MAP);
		got = conn_take_oldest(conn_overflow_bucket(hash), cookie);
		if (got < 0)
			return NULL;
	}
	slot = (__u32)got;
	return bpf_map_lookup_elem(&conns, &slot);
}

static __always_inline void conn_release(__u32 slot)
{
	__u32 bucket = slot / CONN_SLOTS_PER_BUCKET;
	struct conn_bucket *b = bpf_map_lookup_elem(&conn_buckets, &bucket);

	if (b)
		b->cookie[slot & (CONN_SLOTS_PER_BUCKET - 1)] = 0;
}

static __always_inline struct conn_info *conn_of(const struct sock *sk)
{
	__u32 slot;

	return conn_find(sk, &slot);
}

/* Per-CPU one-second window for the host-record rate limit. */
struct rate_window {
	__u64 start_ns;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct rate_window);
} host_rate SEC(".maps");

/* Windows in host_rate. */
#define RATE_HOST 0
#define RATE_LISTEN 1

/* Reserve a record and fill the header; counts the loss when the buffer is full. */
static __always_inline void *reserve(__u64 size, __u32 kind, __u32 flags)
{
	struct why502_header *h = bpf_ringbuf_reserve(&events, size, 0);

	if (!h) {
		count_loss(WHY502_LOSS_RINGBUF);
		return NULL;
	}
	h->kind = kind;
	h->flags = flags;
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->cpu = bpf_get_smp_processor_id();
	h->pad = 0;
	return h;
}

/* When the reader was last woken for a record (boot ns; races between CPUs only move it a little).
 * A wakeup per record cost a 502 storm a context switch per failure (a third of watch's CPU was
 * spent switching in); watch reads the buffer at least every 25 ms anyway. So a record wakes the
 * reader only when none did in the last WAKEUP_GAP_NS: an isolated failure is read at once, and in
 * a storm one wakeup drains the records of the next few milliseconds too. */
#define WAKEUP_GAP_NS (5ULL * 1000 * 1000)
__u64 last_wakeup_ns = 0;

static __always_inline void submit(void *record)
{
	__u64 ts = ((const struct why502_header *)record)->ts_ns;

	if (ts - last_wakeup_ns < WAKEUP_GAP_NS) {
		bpf_ringbuf_submit(record, BPF_RB_NO_WAKEUP);
		return;
	}
	last_wakeup_ns = ts;
	bpf_ringbuf_submit(record, 0); /* the kernel still skips it while the reader is busy */
}

/* Host-wide records are rate limited so a port scan cannot flood the buffer. */
static __always_inline bool rate_allowed(__u32 window, __u32 per_sec)
{
	struct rate_window *w = bpf_map_lookup_elem(&host_rate, &window);
	__u64 now = bpf_ktime_get_boot_ns();

	if (!w)
		return false;
	if (now - w->start_ns > 1000000000ULL) {
		w->start_ns = now;
		w->count = 0;
	}
	if (w->count >= per_sec) {
		count_loss(WHY502_LOSS_RATE_LIMIT);
		return false;
	}
	w->count++;
	return true;
}

static __always_inline bool host_record_allowed(void)
{
	return rate_allowed(RATE_HOST, host_records_per_sec);
}

static __always_inline bool is_watched(__u32 tgid)
{
	return bpf_map_lookup_elem(&watched, &tgid) != NULL;
}

static __always_inline __u16 sock_sport(const struct sock *sk)
{
	/* inet_sport, not skc_num: tcp_set_state() releases the port (num = 0)
	 * before the CLOSE tracepoint fires, but leaves inet_sport in place. */
	return bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
}

static __always_inline void read_sock_tuple(const struct sock *sk, struct why502_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	t->family = family;
	t->sport = sock_sport(sk);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		bpf_core_read(t->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(t->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* ---- connections of watched processes ---------------------------------- */

/* A socket's TCP clock (CLOCK_MONOTONIC ns) as boot ns; 0 stays 0. The two clocks differ only by
 * time spent suspended, read here on the failure path only. */
static __always_inline __u64 mono_to_boot(__u64 mono, __u64 boot_minus_mono)
{
	return mono ? mono + boot_minus_mono : 0;
}

/* The TCP clock of the packet being taken in: a plain load, no clock read. */
static __always_inline __u64 tcp_clock_now(const struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	return tp ? tp->tcp_clock_cache : 0;
}

static __always_inline void emit_conn_fail(const struct sock *sk, struct conn_info *ci,
					   __u32 failure, __u32 last_state, __u64 ts_close)
{
	struct why502_conn_fail *e;
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 boot_minus_mono = 0;

	e = reserve(sizeof(*e), WHY502_EV_CONN_FAIL, 0);
	if (!e)
		return;
	read_sock_tuple(sk, &e->tuple);
	e->pid = ci->pid;
	e->tid = ci->tid;
	__builtin_memcpy(e->comm, ci->comm, sizeof(e->comm));
	e->failure = failure;
	e->sk_err = ci->sk_err;
	e->syn_retrans = ci->syn_retrans;
	e->retrans = ci->retrans;
	e->last_state = last_state;
	e->pad = 0;
	/* bytes_received advances by one for the peer's FIN: report payload only. */
	e->bytes_received = BPF_CORE_READ(tp, bytes_received);
	if (ci->fin_received && e->bytes_received)
		e->bytes_received--;
	e->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	if (ci->mono_established || ci->mono_fin_received)
		boot_minus_mono = bpf_ktime_get_boot_ns() - bpf_ktime_get_ns();
	e->ts_syn_sent = ci->ts_syn_sent;
	e->ts_established = mono_to_boot(ci->mono_established, boot_minus_mono);
	e->ts_reset = ci->ts_reset;
	e->ts_fin_received = mono_to_boot(ci->mono_fin_received, boot_minus_mono);
	e->ts_error = ci->ts_error;
	e->ts_close = ts_close;
	e->conn_id = (__u64)ci->ts_syn_sent ^ ((__u64)ci->tid << 32);
	submit(e);
}

/* Had the upstream answered the last request when its FIN came? A fresh connection: any data
 * (data_segs_in, not bytes_received: the FIN itself counts as a received byte). A reused keepalive
 * connection has data from earlier responses: then the request is unanswered when nginx sent data
 * after the last data it received (lsndtime, icsk_ack.lrcvtime: jiffies, data segments only). A
 * request sent in the same jiffy as the previous response reads as answered: no record, and the
 * correlator reports the record missing rather than guessing; an idle connection the upstream
 * closes (nginx's keepalive cache) is answered, so it never looks like a failure. */
static __always_inline bool answered_before_fin(const struct sock *sk)
{
	/* One helper call, then plain loads (a probe read per field cost ~15 ns each, on every request
	 * an upstream closes first). */
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	if (!tp || tp->data_segs_in == 0)
		return false;
	return (__s32)(tp->lsndtime - tp->inet_conn.icsk_ack.lrcvtime) <= 0;
}

/* Decide at close whether the connection failed, and how. The common case (a
 * normal close) reads one field; errors are read only on the failure paths.
 * Fields of struct sock itself are plain (CO-RE relocated) loads from the
 * trusted tp_btf pointer; tcp_sock fields need a probe read (the verifier
 * types the argument as struct sock). */
static __always_inline void conn_closed(const struct sock *sk, struct conn_info *ci, int oldstate)
{
	__u64 now;

	if (oldstate == TCP_SYN_SENT) {
		/* connect() failed before any SYN left (no port: EADDRNOTAVAIL); the syscall record reports it. */
		if (sock_sport(sk) == 0)
			return;
		now = bpf_ktime_get_boot_ns();
		/* tcp_done_with_error() sets sk_err, closes, and only then reports the error;
		 * an ICMP error met while connect() held the socket lock is kept as a soft error. */
		if (!ci->sk_err)
			ci->sk_err = sk->sk_err;
		if (!ci->sk_err)
			ci->sk_err = sk->sk_err_soft;
		if (ci->ts_reset)
			emit_conn_fail(sk, ci, WHY502_FAIL_RST_IN_SYN_SENT, oldstate, now);
		else if ((ci->sk_err && ci->sk_err != ETIMEDOUT) || (ci->ts_error && !ci->sk_err))
			/* An error was reported; its errno may already be consumed by
			 * getsockopt(SO_ERROR), which clears sk_err and sk_err_soft. */
			emit_conn_fail(sk, ci, WHY502_FAIL_ICMP_ERROR, oldstate, now);
		else
			emit_conn_fail(sk, ci, WHY502_FAIL_SYN_TIMEOUT, oldstate, now);
		return;
	}
	if (ci->ts_reset) {
		if (!ci->sk_err)
			ci->sk_err = sk->sk_err;
		emit_conn_fail(sk, ci, WHY502_FAIL_RST_ESTABLISHED, ci->reset_state, bpf_ktime_get_boot_ns());
		return;
	}
	if (ci->fin_received && !answered_before_fin(sk))
		emit_conn_fail(sk, ci, WHY502_FAIL_FIN_BEFORE_DATA, oldstate, bpf_ktime_get_boot_ns());
}

/* Host-wide: a socket started or stopped listening, in its owner's context. */
static __always_inline void emit_listen_change(const struct sock *sk, bool listening)
{
	struct why502_listen_change *e;
	struct task_struct *task;
	__u64 id;

	/* Only TCP listeners; MPTCP and others also pass through this tracepoint. */
	if (sk->sk_protocol != IPPROTO_TCP)
		return;
	if (!rate_allowed(RATE_LISTEN, listen_records_per_sec))
		return;
	e = reserve(sizeof(*e), WHY502_EV_LISTEN_CHANGE, WHY502_FLAG_HOST);
	if (!e)
		return;
	id = bpf_get_current_pid_tgid();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* inet_sport: still set at LISTEN->CLOSE (see sock_sport). */
	e->family = sk->__sk_common.skc_family;
	e->port = sock_sport(sk);
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (e->family == AF_INET)
		bpf_core_read(e->addr, 4, &sk->__sk_common.skc_rcv_saddr);
	else
		bpf_core_read(e->addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	/* Two dependent loads: which namespace's port this is. */
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	e->cookie = bpf_get_socket_cookie((void *)sk);
	e->listening = listening;
	/* A dying task closes its files after sched_process_exit: this close is its exit. */
	task = bpf_get_current_task_btf();
	e->exiting = (task->flags & PF_EXITING) != 0;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	submit(e);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct conn_info *ci;
	__u32 slot;

	/* Listen transitions are rare: one compare each for everything else. */
	if (newstate == TCP_LISTEN || oldstate == TCP_LISTEN) {
		if (newstate == TCP_LISTEN && oldstate == TCP_CLOSE)
			emit_listen_change(sk, true);
		else if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE)
			emit_listen_change(sk, false);
		return 0;
	}

	if (newstate == TCP_SYN_SENT) {
		__u64 id = bpf_get_current_pid_tgid();

		/* The hot path for everyone else: one hash lookup and out. */
		if (!is_watched(id >> 32))
			return 0;
		if (sk->sk_protocol != IPPROTO_TCP)
			return 0;
		/* The cookie is the connection's key, and the mark conn_find looks for. */
		ci = conn_claim(bpf_get_socket_cookie((void *)sk));
		if (!ci)
			return 0;
		__builtin_memset(ci, 0, sizeof(*ci));
		ci->pid = id >> 32;
		ci->tid = (__u32)id;
		bpf_get_current_comm(ci->comm, sizeof(ci->comm));
		ci->ts_syn_sent = bpf_ktime_get_boot_ns();
		return 0;
	}

	/* Only these transitions matter to a followed connection: the others skip the table. A
	 * connection we follow began in SYN_SENT, so it is connected coming from there: straight to
	 * ESTABLISHED, or to SYN_RECV in a simultaneous open (a self-connect); ESTABLISHED from SYN_RECV
	 * is then either that second step or, every time, the upstream's accepted socket, never ours. */
	if (newstate == TCP_ESTABLISHED || newstate == TCP_SYN_RECV) {
		if (oldstate != TCP_SYN_SENT)
			return 0;
	} else if (newstate != TCP_CLOSE_WAIT && newstate != TCP_CLOSE) {
		return 0;
	}
	ci = conn_find(sk, &slot);
	if (!ci)
		return 0;
	switch (newstate) {
	case TCP_ESTABLISHED:
	case TCP_SYN_RECV:
		ci->mono_established = tcp_clock_now(sk);
		/* Connected, but only after SYN retransmits: a slow or overflowing listener. */
		if (ci->syn_retrans)
			emit_conn_fail(sk, ci, WHY502_FAIL_SYN_RETRANS, oldstate, 0);
		break;
	case TCP_CLOSE_WAIT:
		ci->mono_fin_received = tcp_clock_now(sk);
		ci->fin_received = 1;
		break;
	case TCP_CLOSE:
		conn_closed(sk, ci, oldstate);
		conn_release(slot);
		break;
	}
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_tcp_receive_reset, struct sock *sk)
{
	struct conn_info *ci = conn_of(sk);

	if (!ci)
		return 0;
	ci->ts_reset = bpf_ktime_get_boot_ns();
	ci->reset_state = BPF_CORE_READ(sk, __sk_common.skc_state);
	return 0;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(on_inet_sk_error_report, const struct sock *sk)
{
	struct conn_info *ci = conn_of(sk);

	if (!ci)
		return 0;
	/* RST sets ECONNREFUSED/ECONNRESET, ICMP errors EHOSTUNREACH etc., the SYN timer ETIMEDOUT. */
	ci->sk_err = BPF_CORE_READ(sk, sk_err);
	ci->ts_error = bpf_ktime_get_boot_ns();
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb)
{
	struct conn_info *ci = conn_of(sk);

	if (!ci)
		return 0;
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_SYN_SENT)
		ci->syn_retrans++;
	else
		ci->retrans++;
	return 0;
}

/* ---- host-wide facts about the upstream side --------------------------- */

static __always_inline __u32 drop_code(enum skb_drop_reason reason)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NO_SOCKET) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NO_SOCKET))
		return WHY502_DROP_NO_SOCKET;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW))
		return WHY502_DROP_TCP_LISTEN_OVERFLOW;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP))
		return WHY502_DROP_NETFILTER_DROP;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_BACKLOG) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_BACKLOG))
		return WHY502_DROP_SOCKET_BACKLOG;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_RCVBUFF) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_RCVBUFF))
		return WHY502_DROP_SOCKET_RCVBUFF;
	return WHY502_DROP_OTHER;
}

/* Read the IP and TCP headers of an skb into a tuple (src = packet's sender). */
static __always_inline bool read_skb_tuple(const struct sk_buff *skb, struct why502_tuple *t,
					   __u8 *tcp_flags)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u8 first;
	__u32 thoff;
	struct tcphdr th;

	if (bpf_probe_read_kernel(&first, 1, head + nh))
		return false;
	if ((first >> 4) == 4) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) || ip.protocol != IPPROTO_TCP)
			return false;
		t->family = AF_INET;
		__builtin_memcpy(t->saddr, &ip.saddr, 4);
		__builtin_memcpy(t->daddr, &ip.daddr, 4);
		thoff = nh + (ip.ihl & 0xf) * 4;
	} else if ((first >> 4) == 6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh) || ip6.nexthdr != IPPROTO_TCP)
			return false;
		t->family = AF_INET6;
		__builtin_memcpy(t->saddr, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr, &ip6.daddr, 16);
		thoff = nh + sizeof(ip6);
	} else {
		return false;
	}
	if (bpf_probe_read_kernel(&th, sizeof(th), head + thoff))
		return false;
	t->sport = bpf_ntohs(th.source);
	t->dport = bpf_ntohs(th.dest);
	*tcp_flags = ((__u8 *)&th)[13];
	return true;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct why502_drop *e;
	struct why502_tuple t = {};
	__u8 flags = 0;
	__u32 code;

	/* Most frees are NOT_SPECIFIED or routine purges: leave on the first compare. */
	code = drop_code(reason);
	if (code == WHY502_DROP_OTHER)
		return 0;
	if (!read_skb_tuple(skb, &t, &flags))
		return 0;
	if (!host_record_allowed())
		return 0;
	e = reserve(sizeof(*e), WHY502_EV_DROP, WHY502_FLAG_HOST);
	if (!e)
		return 0;
	e->tuple = t;
	e->reason = reason;
	e->reason_code = code;
	e->tcp_flags = flags;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	submit(e);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct why502_reset_sent *e;
	struct why502_tuple t = {};
	__u8 flags = 0;
	__u32 state = 0;

	if (sk) {
		read_sock_tuple(sk, &t);
		state = BPF_CORE_READ(sk, __sk_common.skc_state);
	} else if (skb) {
		struct why502_tuple in = {};

		/* No socket: the RST answers this incoming packet, so swap to the sender's view. */
		if (!read_skb_tuple(skb, &in, &flags))
			return 0;
		t.family = in.family;
		__builtin_memcpy(t.saddr, in.daddr, 16);
		__builtin_memcpy(t.daddr, in.saddr, 16);
		t.sport = in.dport;
		t.dport = in.sport;
	} else {
		return 0;
	}
	if (!host_record_allowed())
		return 0;
	e = reserve(sizeof(*e), WHY502_EV_RESET_SENT, WHY502_FLAG_HOST);
	if (!e)
		return 0;
	e->tuple = t;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->state = state;
	e->has_socket = sk != NULL;
	e->pad = 0;
	submit(e);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(on_mark_victim, struct task_struct *task, uid_t uid)
{
	struct why502_oom_victim *e;
	struct mm_struct *mm;

	e = reserve(sizeof(*e), WHY502_EV_OOM_VICTIM, WHY502_FLAG_HOST);
	if (!e)
		return 0;
	e->pid = BPF_CORE_READ(task, tgid);
	e->uid = uid;
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	e->total_vm_pages = 0;
	e->anon_rss_pages = 0;
	e->file_rss_pages = 0;
	e->shmem_rss_pages = 0;
	mm = BPF_CORE_READ(task, mm);
	if (mm) {
		e->total_vm_pages = BPF_CORE_READ(mm, total_vm);
		/* rss_stat is an array of percpu_counter here; .count is the folded value. */
		e->file_rss_pages = BPF_CORE_READ(mm, rss_stat[MM_FILEPAGES].count);
		e->anon_rss_pages = BPF_CORE_READ(mm, rss_stat[MM_ANONPAGES].count);
		e->shmem_rss_pages = BPF_CORE_READ(mm, rss_stat[MM_SHMEMPAGES].count);
	}
	submit(e);
	return 0;
}

static __always_inline bool is_fatal_signal(int sig)
{
	/* Default action terminates the process and servers rarely handle these. */
	switch (sig) {
	case 2: /* SIGINT */
	case 3: /* SIGQUIT */
	case 4: /* SIGILL */
	case 6: /* SIGABRT */
	case 7: /* SIGBUS */
	case 8: /* SIGFPE */
	case 9: /* SIGKILL */
	case 11: /* SIGSEGV */
	case 15: /* SIGTERM */
	case 24: /* SIGXCPU */
	case 31: /* SIGSYS */
		return true;
	}
	return false;
}

SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	struct why502_signal *e;
	__u64 id;

	if (!is_fatal_signal(sig))
		return 0;
	e = reserve(sizeof(*e), WHY502_EV_SIGNAL, WHY502_FLAG_HOST);
	if (!e)
		return 0;
	id = bpf_get_current_pid_tgid();
	e->sig = sig;
	e->result = result;
	e->target_pid = BPF_CORE_READ(task, tgid);
	e->target_tid = BPF_CORE_READ(task, pid);
	BPF_CORE_READ_STR_INTO(&e->target_comm, task, comm);
	e->sender_pid = id >> 32;
	e->sender_tid = (__u32)id;
	bpf_get_current_comm(e->sender_comm, sizeof(e->sender_comm));
	/* SEND_SIG_NOINFO (0) and SEND_SIG_PRIV (1) are not pointers. */
	e->si_code = (__u64)info > 1 ? BPF_CORE_READ(info, si_code) : 0x80 /* SI_KERNEL */;
	e->pad = 0;
	submit(e);
	return 0;
}

/* Descriptors read per dying process: listeners sit at low numbers (servers open them first);
 * a table larger than this is counted (WHY502_LOSS_FD_WALK), not walked. */
#define FD_WALK_MAX 1024
#define S_IFMT_BITS 0170000
#define S_IFSOCK_BITS 0140000

struct fd_walk {
	struct file **fds;
	unsigned long *open_fds; /* the table's bitmap of open descriptors */
	unsigned long word;      /* open_fds word of the current 64 descriptors */
	__u32 pid;
};

static long walk_one_fd(__u32 i, void *data)
{
	struct fd_walk *w = data;
	struct why502_unix_listener_exit *e;
	struct unix_address *addr;
	struct file *f = NULL;
	struct socket *sock;
	struct sock *sk;
	int len;

	/* Most slots are empty: one read of the bitmap per 64 descriptors, not one per slot
	 * (measured here: ~19 us per exit reading every slot of a 64-slot table). */
	if ((i & 63) == 0 && bpf_probe_read_kernel(&w->word, sizeof(w->word), &w->open_fds[i >> 6]))
		return 1;
	if (!((w->word >> (i & 63)) & 1))
		return 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &w->fds[i]) || !f)
		return 0;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT_BITS) != S_IFSOCK_BITS)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN)
		return 0;
	addr = BPF_CORE_READ((struct unix_sock *)sk, addr);
	if (!addr)
		return 0;
	if (!host_record_allowed())
		return 1;
	e = reserve(sizeof(*e), WHY502_EV_UNIX_LISTENER_EXIT, WHY502_FLAG_HOST);
	if (!e)
		return 1;
	e->pid = w->pid;
	e->fd = i;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->inode = BPF_CORE_READ(f, f_inode, i_ino);
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	/* len counts sun_family (2 bytes) and, for a filesystem path, not always the NUL. */
	len = BPF_CORE_READ(addr, len) - 2;
	if (len < 0)
		len = 0;
	if (len > WHY502_UNIX_PATH_LEN)
		len = WHY502_UNIX_PATH_LEN;
	e->path_len = len;
	e->pad = 0;
	__builtin_memset(e->path, 0, sizeof(e->path));
	bpf_core_read(e->path, sizeof(e->path), &addr->name[0].sun_path);
	submit(e);
	return 0;
}

/* At the last thread's exit, before exit_files(): the listening unix sockets it still holds. */
static __always_inline void walk_unix_listeners(struct task_struct *p, __u32 tgid)
{
	struct fdtable *fdt;
	struct fd_walk w;
	__u32 n;

	if (BPF_CORE_READ(p, flags) & PF_KTHREAD)
		return;
	fdt = BPF_CORE_READ(p, files, fdt);
	if (!fdt)
		return;
	n = BPF_CORE_READ(fdt, max_fds);
	if (n > FD_WALK_MAX) {
		count_loss(WHY502_LOSS_FD_WALK);
		n = FD_WALK_MAX;
	}
	w.fds = BPF_CORE_READ(fdt, fd);
	w.open_fds = BPF_CORE_READ(fdt, open_fds);
	w.word = 0;
	w.pid = tgid;
	bpf_loop(n, walk_one_fd, &w, 0);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_sched_process_exit, struct task_struct *p, bool group_dead)
{
	struct why502_exit *e;
	__u32 tgid;
	__u32 watched_flag;

	/* One record per process, when its last thread leaves. */
	if (!group_dead)
		return 0;
	tgid = BPF_CORE_READ(p, tgid);
	watched_flag = is_watched(tgid);
	if (watched_flag)
		bpf_map_delete_elem(&watched, &tgid);
	if (!host_record_allowed())
		return 0;
	e = reserve(sizeof(*e), WHY502_EV_EXIT, WHY502_FLAG_HOST);
	if (!e)
		return 0;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	if (e->exit_code == 0)
		e->exit_code = BPF_CORE_READ(p, signal, group_exit_code);
	e->watched = watched_flag;
	submit(e);
	walk_unix_listeners(p, tgid);
	return 0;
}

static __always_inline void watch_process(__u32 pid, __u32 parent, __u32 via,
					  struct task_struct *task)
{
	__u8 one = 1;
	struct why502_watch *e;

	if (bpf_map_update_elem(&watched, &pid, &one, BPF_ANY)) {
		count_loss(WHY502_LOSS_WATCH_MAP);
		return;
	}
	e = reserve(sizeof(*e), WHY502_EV_WATCH, 0);
	if (!e)
		return;
	e->pid = pid;
	e->parent_pid = parent;
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	e->via = via;
	e->pad = 0;
	submit(e);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);

	/* New threads share the tgid; only new processes (a reload's workers) need adding. */
	if (ptgid == ctgid || !is_watched(ptgid))
		return 0;
	watch_process(ctgid, ptgid, 1, child);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_sched_process_exec, struct task_struct *p)
{
	char comm[WHY502_COMM_LEN];
	__u32 tgid;

	if (n_comm_filters == 0)
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	for (int f = 0; f < WHY502_MAX_COMM_FILTERS; f++) {
		bool same = true;

		if (f >= n_comm_filters)
			break;
		for (int i = 0; i < WHY502_COMM_LEN; i++) {
			if (comm[i] != comm_filters[f][i]) {
				same = false;
				break;
			}
			if (comm[i] == 0)
				break;
		}
		if (same) {
			tgid = BPF_CORE_READ(p, tgid);
			if (!is_watched(tgid))
				watch_process(tgid, BPF_CORE_READ(p, real_parent, tgid), 2, p);
			return 0;
		}
	}
	return 0;
}

/* ---- syscalls of watched processes (classic tracepoints: need tracefs) -- */

SEC("tp/syscalls/sys_exit_connect")
int on_sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	__u64 id;
	struct pt_regs *regs;
	struct why502_syscall_err *e;
	__u64 uaddr;
	__u32 addrlen;
	__u16 family = 0;

	/* A non-blocking TCP connect in progress is the normal case: out before any map. */
	if (ret >= 0 || ret == -EINPROGRESS)
		return 0;
	id = bpf_get_current_pid_tgid();
	if (!is_watched(id >> 32))
		return 0;
	/* The arguments are still in the task's saved user registers: no enter/exit map. */
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	uaddr = PT_REGS_PARM2_CORE_SYSCALL(regs);
	addrlen = PT_REGS_PARM3_CORE_SYSCALL(regs);
	e = reserve(sizeof(*e), WHY502_EV_SYSCALL_ERR, 0);
	if (!e)
		return 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->syscall = WHY502_SYS_CONNECT;
	e->err = -ret;
	e->fd = (__s32)PT_REGS_PARM1_CORE_SYSCALL(regs);
	e->port = 0;
	e->pad2 = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	__builtin_memset(e->unix_path, 0, sizeof(e->unix_path));
	bpf_probe_read_user(&family, sizeof(family), (void *)uaddr);
	e->family = family;
	if (family == AF_INET) {
		struct sockaddr_in sin = {};

		bpf_probe_read_user(&sin, sizeof(sin), (void *)uaddr);
		e->port = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(e->addr, &sin.sin_addr, 4);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};

		bpf_probe_read_user(&sin6, sizeof(sin6), (void *)uaddr);
		e->port = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(e->addr, &sin6.sin6_addr, 16);
	} else if (family == AF_UNIX) {
		__u32 path_len;

		/* sun_path follows the 2-byte family; abstract names start with NUL. */
		path_len = addrlen > 2 ? (addrlen - 2) & 0xff : 0;
		if (path_len > WHY502_UNIX_PATH_LEN)
			path_len = WHY502_UNIX_PATH_LEN;
		if (path_len)
			bpf_probe_read_user(e->unix_path, path_len, (void *)(uaddr + 2));
		if (e->unix_path[0] == 0 && path_len > 1)
			e->unix_path[0] = '@';
	}
	submit(e);
	return 0;
}

static __always_inline void emit_fd_syscall_err(__u32 syscall, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct why502_syscall_err *e;

	if (!is_watched(id >> 32))
		return;
	e = reserve(sizeof(*e), WHY502_EV_SYSCALL_ERR, 0);
	if (!e)
		return;
	__builtin_memset(&e->pid, 0, sizeof(*e) - sizeof(e->hdr));
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->syscall = syscall;
	e->err = -ret;
	e->fd = -1;
	submit(e);
}

SEC("tp/syscalls/sys_exit_socket")
int on_sys_exit_socket(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		emit_fd_syscall_err(WHY502_SYS_SOCKET, ctx->ret);
	return 0;
}

/* accept() fails with EAGAIN all the time in nginx; only running out of descriptors matters. */
static __always_inline bool is_resource_errno(long ret)
{
	return ret == -EMFILE || ret == -ENFILE || ret == -ENOBUFS || ret == -ENOMEM;
}

SEC("tp/syscalls/sys_exit_accept4")
int on_sys_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	if (is_resource_errno(ctx->ret))
		emit_fd_syscall_err(WHY502_SYS_ACCEPT, ctx->ret);
	return 0;
}

SEC("tp/syscalls/sys_exit_accept")
int on_sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	if (is_resource_errno(ctx->ret))
		emit_fd_syscall_err(WHY502_SYS_ACCEPT, ctx->ret);
	return 0;
}
