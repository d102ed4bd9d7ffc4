// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The bench's floor: an empty program on every hook `why502 watch` attaches at start (its tp_btf
 * programs; the syscall probes are armed on demand and not part of it). What a tracer costs nginx
 * merely by being on those hooks, before it does any work. tests/unit/bench_floor_test.cpp checks the
 * hooks here are exactly why502's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EMPTY_ON(hook)                                                                              \
	SEC("tp_btf/" #hook)                                                                         \
	int BPF_PROG(floor_##hook)                                                                   \
	{                                                                                            \
		return 0;                                                                            \
	}

EMPTY_ON(inet_sock_set_state)
EMPTY_ON(tcp_receive_reset)
EMPTY_ON(inet_sk_error_report)
EMPTY_ON(tcp_retransmit_skb)
EMPTY_ON(kfree_skb)
EMPTY_ON(tcp_send_reset)
EMPTY_ON(mark_victim)
EMPTY_ON(signal_generate)
EMPTY_ON(sched_process_exit)
EMPTY_ON(sched_process_fork)
EMPTY_ON(sched_process_exec)
