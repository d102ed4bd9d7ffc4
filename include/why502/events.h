/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between bpf/ and src/: every record that crosses the ring buffer.
 * Plain C, fixed-width types, explicit padding, no pointers. Included by the
 * BPF programs (after vmlinux.h) and by C++ (which static_asserts the layout).
 */
#ifndef WHY502_EVENTS_H
#define WHY502_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define WHY502_COMM_LEN 16
#define WHY502_UNIX_PATH_LEN 108
#define WHY502_MAX_COMM_FILTERS 4

/* Which record follows the common header. Values are part of the capture format. */
enum why502_event_kind {
	WHY502_EV_CONN_FAIL = 1,   /* a watched process's TCP connection failed */
	WHY502_EV_SYSCALL_ERR = 2, /* connect()/socket()/accept4() of a watched process failed */
	WHY502_EV_DROP = 3,        /* host: kfree_skb with an interesting drop reason */
	WHY502_EV_RESET_SENT = 4,  /* host: the kernel sent a TCP RST */
	WHY502_EV_OOM_VICTIM = 5,  /* host: oom:mark_victim */
	WHY502_EV_SIGNAL = 6,      /* host: a fatal signal was generated */
	WHY502_EV_EXIT = 7,        /* host: a process (thread group) exited */
	WHY502_EV_WATCH = 8,       /* a process entered the watched set (fork or exec) */
	WHY502_EV_LISTEN_CHANGE = 9, /* host: a TCP socket started or stopped listening */
	WHY502_EV_UNIX_LISTENER_EXIT = 10, /* host: a dying process held a listening unix socket */
};

/* Why a watched connection was reported. */
enum why502_conn_failure {
	WHY502_FAIL_RST_IN_SYN_SENT = 1, /* our SYN was answered by RST: nothing listens */
	WHY502_FAIL_RST_ESTABLISHED = 2, /* RST on an established connection */
	WHY502_FAIL_FIN_BEFORE_DATA = 3, /* peer closed before sending one byte */
	WHY502_FAIL_SYN_TIMEOUT = 4,     /* closed in SYN_SENT with no answer (by us or the kernel) */
	WHY502_FAIL_ICMP_ERROR = 5,      /* an ICMP error (or other soft error) killed it in SYN_SENT */
	WHY502_FAIL_SYN_RETRANS = 6,     /* still connecting but SYN retransmitted (sent once, at connect end) */
};

enum why502_syscall {
	WHY502_SYS_CONNECT = 1,
	WHY502_SYS_SOCKET = 2,
	WHY502_SYS_ACCEPT = 3,
};

/* Which origin a record's process fields describe. */
#define WHY502_FLAG_HOST 0x1 /* a host-wide fact, not tied to a watched process */

/* Common header of every record. */
struct why502_header {
	__u32 kind;  /* enum why502_event_kind */
	__u32 flags; /* WHY502_FLAG_* */
	__u64 ts_ns; /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
	__u32 cpu;
	__u32 pad;
};

/* An IPv4 or IPv6 endpoint pair. IPv4 addresses sit in the first 4 bytes. */
struct why502_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 family; /* AF_INET / AF_INET6 */
	__u16 sport;  /* host byte order */
	__u16 dport;  /* host byte order */
	__u16 pad;
};

struct why502_conn_fail {
	struct why502_header hdr;
	struct why502_tuple tuple;
	__u32 pid; /* tgid of the process that called connect() */
	__u32 tid;
	char comm[WHY502_COMM_LEN];
	__u32 failure;         /* enum why502_conn_failure */
	__s32 sk_err;          /* errno the kernel set on the socket (0 if none) */
	__u32 syn_retrans;     /* SYN retransmissions seen */
	__u32 retrans;         /* retransmissions after establishment */
	__u32 last_state;      /* TCP state before the failing transition */
	__u32 pad;
	__u64 bytes_received;  /* payload bytes from the peer */
	__u64 bytes_acked;     /* our payload bytes the peer acknowledged */
	__u64 ts_syn_sent;     /* each step, 0 when not reached */
	__u64 ts_established;
	__u64 ts_reset;
	__u64 ts_fin_received;
	__u64 ts_error;
	__u64 ts_close;
	__u64 conn_id;         /* identifies the attempt within a capture (syn time ^ tid) */
};

struct why502_syscall_err {
	struct why502_header hdr;
	__u32 pid;
	__u32 tid;
	char comm[WHY502_COMM_LEN];
	__u32 syscall; /* enum why502_syscall */
	__s32 err;     /* positive errno */
	__s32 fd;      /* the fd connect() was given, -1 otherwise */
	__u16 family;  /* address family of the connect() target, 0 if unknown */
	__u16 port;    /* host byte order, inet only */
	__u8 addr[16]; /* inet target address */
	char unix_path[WHY502_UNIX_PATH_LEN]; /* AF_UNIX target; '@'-prefixed abstract */
	__u32 pad2;
};

struct why502_drop {
	struct why502_header hdr;
	struct why502_tuple tuple; /* as seen in the dropped packet (src = sender) */
	__u32 reason;              /* enum skb_drop_reason value of this kernel */
	__u32 reason_code;         /* WHY502_DROP_* (stable across kernels) */
	__u8 tcp_flags;
	__u8 pad[7];
};

/* Stable names of the drop reasons we report; the kernel's numbers vary by version. */
enum why502_drop_code {
	WHY502_DROP_OTHER = 0,
	WHY502_DROP_NO_SOCKET = 1,
	WHY502_DROP_TCP_LISTEN_OVERFLOW = 2,
	WHY502_DROP_NETFILTER_DROP = 3,
	WHY502_DROP_SOCKET_BACKLOG = 4,
	WHY502_DROP_TCP_RESET = 5,
	WHY502_DROP_SOCKET_RCVBUFF = 6,
};

struct why502_reset_sent {
	struct why502_header hdr;
	struct why502_tuple tuple; /* our side first: saddr/sport are the RST's sender */
	__u32 pid;                 /* current task (often softirq: not meaningful) */
	__u32 state;               /* TCP state of the socket, 0 when there was none */
	__u32 has_socket;          /* 0: answered a packet no socket owned */
	__u32 pad;
};

struct why502_oom_victim {
	struct why502_header hdr;
	__u32 pid;
	__u32 uid;
	char comm[WHY502_COMM_LEN];
	__u64 total_vm_pages;
	__u64 anon_rss_pages;
	__u64 file_rss_pages;
	__u64 shmem_rss_pages;
};

struct why502_signal {
	struct why502_header hdr;
	__u32 sig;
	__s32 result;      /* TRACE_SIGNAL_* : 0 delivered */
	__u32 target_pid;  /* tgid */
	__u32 target_tid;
	char target_comm[WHY502_COMM_LEN];
	__u32 sender_pid;  /* tgid of current: the sender, or the faulting task itself */
	__u32 sender_tid;
	char sender_comm[WHY502_COMM_LEN];
	__s32 si_code;     /* SI_USER, SI_KERNEL, ... */
	__u32 pad;
};

struct why502_exit {
	struct why502_header hdr;
	__u32 pid;
	__u32 ppid;
	char comm[WHY502_COMM_LEN];
	__s32 exit_code; /* raw wait status: (code << 8) | signal */
	__u32 watched;   /* 1 if the process was in the watched set */
};

struct why502_watch {
	struct why502_header hdr;
	__u32 pid;
	__u32 parent_pid;
	char comm[WHY502_COMM_LEN];
	__u32 via; /* 1 fork, 2 exec (comm matched) */
	__u32 pad;
};

/* CLOSE->LISTEN runs in the context of the task that called listen(); LISTEN->CLOSE in the
 * context of the task that closed it, which is the dying owner itself when it exits. */
struct why502_listen_change {
	struct why502_header hdr;
	__u32 pid;        /* tgid of current: the listener's owner */
	__u32 tid;
	char comm[WHY502_COMM_LEN];
	__u16 family;     /* AF_INET / AF_INET6 */
	__u16 port;       /* host byte order */
	__u32 netns;      /* inode of the socket's network namespace, 0 if unknown */
	__u8 addr[16];    /* bound address; IPv4 in the first 4 bytes */
	__u64 cookie;     /* socket cookie: pairs a stop with its start */
	__u8 listening;   /* 1: started listening; 0: stopped */
	__u8 exiting;     /* 1: current had PF_EXITING (closed by its owner's exit) */
	__u8 pad[6];
};

/* Unix sockets have no state tracepoint: when a process's last thread exits (sched_process_exit,
 * before the task closes its files), its descriptor table is walked for listening AF_UNIX sockets,
 * one record each. So the owner of a unix upstream is known from the kernel at its death, however
 * short its life. */
struct why502_unix_listener_exit {
	struct why502_header hdr;
	__u32 pid;        /* tgid of the dying process */
	__u32 fd;         /* the descriptor it held the listener on */
	char comm[WHY502_COMM_LEN];
	__u64 inode;      /* socket inode: the same number /proc/net/unix shows */
	__u32 netns;      /* inode of the socket's network namespace */
	__u16 path_len;   /* bytes of path (sun_path); abstract names start with a NUL */
	__u16 pad;
	char path[WHY502_UNIX_PATH_LEN];
};

/* Per-CPU loss counters: index into the `drop_counters` percpu array. */
enum why502_loss_site {
	WHY502_LOSS_RINGBUF = 0,   /* bpf_ringbuf_reserve failed: userspace too slow */
	WHY502_LOSS_CONN_MAP = 1,  /* connection table bucket full: its oldest connection no longer followed */
	WHY502_LOSS_WATCH_MAP = 2, /* watched-process map full */
	WHY502_LOSS_RATE_LIMIT = 3, /* host-wide record suppressed by the rate limit */
	WHY502_LOSS_FD_WALK = 4,   /* a dying process had more descriptors than the walk reads */
	WHY502_LOSS_SITES = 5,
};

#endif /* WHY502_EVENTS_H */
