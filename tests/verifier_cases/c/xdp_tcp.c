/* Variable-length headers: ip->ihl * 4 as a packet offset, TCP port filter, map of counters. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 64);
} ports SEC(".maps");

SEC("xdp")
int xdp_tcp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	__u32 hl = ip->ihl * 4;
	if (hl < sizeof(*ip))
		return XDP_DROP;
	struct tcphdr *tcp = (void *)ip + hl;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	__u32 key = bpf_ntohs(tcp->dest) & 63;
	__u64 *c = bpf_map_lookup_elem(&ports, &key);
	if (c)
		__sync_fetch_and_add(c, 1);
	__u64 total = 0;
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < 64; i++) {
		__u64 *v = bpf_map_lookup_elem(&ports, &i);
		if (v)
			total += *v;
	}
	return total > 1000000 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
