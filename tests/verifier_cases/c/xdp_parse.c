/* Modern style: BTF-defined maps, direct packet access with bounds checks, loops. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 256);
} by_proto SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1024);
} by_saddr SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
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
		return XDP_DROP;
	__u32 key = ip->protocol;
	__u64 *cnt = bpf_map_lookup_elem(&by_proto, &key);
	if (cnt)
		*cnt += 1;
	__u32 saddr = ip->saddr;
	__u64 *seen = bpf_map_lookup_elem(&by_saddr, &saddr);
	if (seen) {
		__sync_fetch_and_add(seen, 1);
	} else {
		__u64 one = 1;
		bpf_map_update_elem(&by_saddr, &saddr, &one, BPF_ANY);
	}
	return XDP_PASS;
}

SEC("xdp")
int xdp_checksum(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 sum = 0;
	__u16 *p = data;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 750; i++) {
		if ((void *)(p + 1) > data_end)
			break;
		sum += *p;
		p++;
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
